"""The content commands as a user runs them: real processes, exit codes, bytes."""
from __future__ import annotations

import json

import click
import pytest

from configdrive.cli import cli
from tests.conftest import SAMPLES, run_cli

RICH = str(SAMPLES / "rich.yaml")


def all_command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(all_command_paths(command, (*prefix, name)))
    return paths


@pytest.mark.parametrize("path", [(), *all_command_paths(cli)], ids=lambda p: " ".join(p) or "configdrive")
def test_help_everywhere(path):
    proc = run_cli(*path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert b"Usage:" in proc.stdout


def test_render_prints_exactly_the_body():
    proc = run_cli("render", "--instance", RICH, "/openstack/latest/meta_data.json", check=True)
    doc = json.loads(proc.stdout)
    assert doc["uuid"] == "fbe3b826-7673-4446-8f4c-ede1d2abd0e2" and doc["hostname"] == "db-1.example.org"
    assert not proc.stdout.endswith(b"\n")
    assert proc.stderr == b"200 application/json\n"


def test_render_404_exit_1():
    proc = run_cli("render", "--instance", RICH, "/latest/meta-data/nope")
    assert (proc.returncode, proc.stderr) == (1, b"404 text/plain; charset=utf-8\n")


def test_render_drive_view_shows_injected_files():
    assert run_cli("render", "--instance", RICH, "/openstack/content/0001").returncode == 1
    proc = run_cli("render", "--drive", "--instance", RICH, "/openstack/content/0001", check=True)
    assert proc.stdout == b"primary=true\nreplicas=2\n"


def test_render_missing_spec_exit_2():
    proc = run_cli("render", "--instance", "nope.yaml", "/latest/meta-data")
    assert proc.returncode == 2 and b"nope.yaml: <top>: no such file" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_tree_lists_every_drive_file_with_size():
    proc = run_cli("tree", "--instance", RICH, check=True)
    rows = [line.split() for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 51
    sizes = {name: int(size) for size, name in rows}
    assert sizes["openstack/content/0001"] == len(b"primary=true\nreplicas=2\n")
    assert "openstack/latest/password" not in sizes
    assert b"51 files" in proc.stderr


def test_bad_usage_exit_2():
    assert run_cli("render").returncode == 2
    assert run_cli("no-such-command").returncode == 2
