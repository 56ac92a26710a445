"""`validate`, `render` and `tree`: look at what a guest will see, without a guest."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from configdrive.commands.common import EXIT_BAD_INPUT, EXIT_FAILURE, load_or_exit


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(specs: tuple[Path, ...]) -> None:
    """Check instance SPECS (YAML or JSON); print every problem with its field.

    Exit 0 when all are valid, 2 when any is not.
    """
    from metadata_content.errors import SpecError
    from metadata_content.spec import load_instance

    bad = 0
    for spec in specs:
        try:
            instance = load_instance(spec)
        except SpecError as err:
            bad += 1
            click.echo(err.render(), err=True)
        else:
            click.echo(f"{spec}: ok ({instance.uuid}, {instance.fqdn})")
    if bad:
        click.echo(f"{bad} of {len(specs)} spec(s) invalid", err=True)
        sys.exit(EXIT_BAD_INPUT)


@click.command()
@click.option("--instance", "spec", required=True, type=click.Path(path_type=Path),
              help="Instance spec file.")
@click.option("--drive", is_flag=True,
              help="Render as written on a config drive (files, admin_pass) instead of HTTP.")
@click.option("--method", default="GET", show_default=True, help="HTTP method to answer.")
@click.argument("path")
def render(spec: Path, drive: bool, method: str, path: str) -> None:
    """Print exactly the body the metadata service returns for PATH.

    The status goes to stderr; exit 0 for 200, 1 otherwise, 2 for a bad spec.
    Example: configdrive render --instance samples/rich.yaml /openstack/latest/meta_data.json
    """
    from metadata_content.render.tree import MetadataTree, lookup_without_instance

    answer = lookup_without_instance(path, method.upper())
    if answer is None:
        instance = load_or_exit(spec)
        tree = MetadataTree(instance, delivery="drive" if drive else "http")
        answer = tree.lookup(path, method.upper())
    sys.stdout.buffer.write(answer.body)
    sys.stdout.buffer.flush()
    click.echo(f"{answer.status} {answer.content_type}", err=True)
    sys.exit(0 if answer.ok else EXIT_FAILURE)


@click.command()
@click.option("--instance", "spec", required=True, type=click.Path(path_type=Path),
              help="Instance spec file.")
def tree(spec: Path) -> None:
    """List every file of the instance's config drive with its size in bytes."""
    from metadata_content.render.tree import MetadataTree

    files = MetadataTree(load_or_exit(spec), delivery="drive").drive_files()
    width = max(len(str(len(body))) for body in files.values())
    for name, body in files.items():
        click.echo(f"{len(body):>{width}}  {name}")
    click.echo(f"{len(files)} files, {sum(len(b) for b in files.values())} bytes", err=True)
