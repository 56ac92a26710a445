"""What every command shares: exit codes and turning user mistakes into messages."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def load_or_exit(spec: Path) -> "Instance":
    """Load an instance spec; on a bad spec print every problem and exit 2."""
    from metadata_content.errors import SpecError
    from metadata_content.spec import load_instance

    try:
        return load_instance(spec)
    except SpecError as err:
        click.echo(err.render(), err=True)
        sys.exit(EXIT_BAD_INPUT)
