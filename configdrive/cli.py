"""The `configdrive` command line: a lazy click group.

Each command sits in its own module under :mod:`configdrive.commands` and is
imported only when it runs (see :class:`LazyGroup`). Exit codes everywhere:
0 success, 1 failure (for example a 404 or an invalid image), 2 bad input.
"""
from __future__ import annotations

import gc
import sys

import click

from configdrive.lazy_group import LazyGroup

COMMANDS = {
    "validate": "configdrive.commands.content:validate",
    "render": "configdrive.commands.content:render",
    "tree": "configdrive.commands.content:tree",
    "build": "configdrive.commands.images:build",
    "inspect": "configdrive.commands.images:inspect",
    "attach": "configdrive.commands.libvirt:attach",
    "detach": "configdrive.commands.libvirt:detach",
    "sync": "configdrive.commands.libvirt:sync",
    "instances": "configdrive.commands.service:instances",
    "serve": "configdrive.commands.service:serve",
    "sign": "configdrive.commands.service:sign",
    "query": "configdrive.commands.service:query",
    "proxy": "configdrive.commands.chain:proxy",
    "lab": "configdrive.commands.chain:lab",
    "doctor": "configdrive.commands.chain:doctor",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="configdrive")
def cli() -> None:
    """Build OpenStack config drives and serve instance metadata from one model.

    \b
    Files a spec names (user_data.file, files[].file, keys[].file) must be
    regular files inside the spec's directory, at most 49149, 10240 and
    16384 bytes; CONFIGDRIVE_ALLOW_FILES_OUTSIDE=DIR[:DIR...] allows more
    directories.
    """


def main() -> None:
    """The console script.

    On the way out, everything still alive (modules, classes, functions: tens
    of thousands of objects) is frozen out of the garbage collector's reach.
    Otherwise the interpreter's shutdown collections walk all of it once more
    just before the OS reclaims the memory: about 30 ms, a fifth of a whole
    `configdrive build`. atexit handlers, flushes and reference-count clean-up
    still run; only cycles left at exit are not collected.

    An error of :mod:`metadata_content.errors`' hierarchy is printed in its
    own words with its exit status; any other exception is a bug, and its
    traceback is shown as one.
    """
    from metadata_content.errors import ConfigdriveError

    try:
        cli()
    except ConfigdriveError as err:  # a command left one unhandled: still the user's words
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    finally:
        gc.freeze()
