"""A click group whose sub-commands are imported only when invoked.

Start-up matters for a CLI that operators run in loops: `configdrive build`
must not pay for Flask, libvirt or pyfatfs when it does not use them, so each
command lives in its own module and is imported by name on demand.
"""
from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """Maps command names to ``"module:attribute"`` strings, resolved lazily."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help lists every command; importing them all here is acceptable
        # because --help is not a hot path.
        super().format_commands(ctx, formatter)
