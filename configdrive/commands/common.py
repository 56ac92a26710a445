"""What every command shares: exit codes and turning user mistakes into messages.

Imported at CLI start: the content model, the config and SQLAlchemy are
imported inside the functions.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance
    from metadata_content.server.config import ApiConfig
    from metadata_content.settings import StoreSettings
    from metadata_content.store import Store

class ImageFormat(click.Choice):
    """``--format``: iso9660 or vfat, and the other names users type for them (iso, fat)."""

    def __init__(self) -> None:
        from configdrive.images.formats import FORMATS

        super().__init__(list(FORMATS), case_sensitive=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from configdrive.images.formats import ALIASES

        return super().convert(ALIASES.get(str(value).lower(), value), param, ctx)


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def fail(status: int, message: str) -> NoReturn:
    """End a command on a user-facing error: ``error: message`` on stderr, exit ``status``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def load_or_exit(spec: Path) -> Instance:
    """Load an instance spec; on a bad spec print every problem and exit 2."""
    from metadata_content.errors import SpecError
    from metadata_content.spec import load_instance

    try:
        return load_instance(spec)
    except SpecError as err:
        click.echo(err.render(), err=True)
        sys.exit(EXIT_BAD_INPUT)


def warn_password_on_command_line(store_url: str | None) -> None:
    """--store-url is only ever given on the command line, where every local user
    can read it (``ps``, /proc/PID/cmdline): say so when it holds a password."""
    if not store_url or "@" not in store_url:
        return
    from sqlalchemy.engine import make_url

    try:
        password = make_url(store_url).password
    except Exception:
        return
    if password:
        click.echo("warning: --store-url holds a password, which every local user can read (ps); "
                   "put the URL in the config file ([store] url) or CONFIGDRIVE_STORE_URL", err=True)


def config_or_exit(config_file: str | None, **overrides: Any) -> ApiConfig:
    """The API/store configuration (file < env < options); a bad one prints and exits 2."""
    from metadata_content.server.config import ConfigError, load_config

    warn_password_on_command_line(overrides.get("store_url"))

    try:
        return load_config(config_file, **overrides)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def store_settings_or_exit(config_file: str | None, **overrides: Any) -> StoreSettings:
    """[store] only (file < env < options), for commands that open the store and nothing
    else: a mistake in another section is that section's owner's to report; exit 2."""
    from metadata_content.settings import ConfigError, StoreSettings, load

    try:
        return load(StoreSettings, config_file, **overrides)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def store_or_exit(config: StoreSettings) -> Store:
    """Open the configured store; any driver error prints one line (no password) and exits 1."""
    from metadata_content.store import Store, unavailable_reason

    try:
        return Store(config.store_url, config.data_dir)
    except Exception as err:
        # the driver's first line only (SQLAlchemy appends the statement and a link)
        text = unavailable_reason(err) or (str(err).strip().splitlines() or [type(err).__name__])[0]
        where, reason = _redacted(config.store_url, config.data_dir, text)
        click.echo(f"error: cannot open the store {where}: {reason}", err=True)
        sys.exit(EXIT_FAILURE)


def _redacted(store_url: str | None, data_dir: str | None, reason: str) -> tuple[str, str]:
    """(where, reason) safe to print: a database password never is, even in driver text."""
    if not store_url:
        return data_dir or "", reason
    from sqlalchemy.engine import make_url

    try:
        url = make_url(store_url)
    except Exception:
        return store_url.split(":", 1)[0] + "://...", reason
    if url.password:
        reason = reason.replace(url.password, "***")
    return url.render_as_string(hide_password=True), reason


def open_store(config_file: str | None, data_dir: str | None, store_url: str | None) -> Store:
    """The instance store the --config/--data-dir/--store-url options name; exit 2 or 1 on errors."""
    return store_or_exit(store_settings_or_exit(config_file, data_dir=data_dir, store_url=store_url))
