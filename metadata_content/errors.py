"""Errors a user can cause or must act on, each carrying the CLI's exit status.

Like pycdlib's classes, they tell a user's mistake from a failure of the
world from a bug: :class:`BadInput` (exit 2) is something the user gave
wrongly (a spec, an option, a configuration), :class:`Failure` (exit 1)
something that could not be done (a disk full, a daemon away). Anything else
that escapes is a bug and is shown as one, with its traceback.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Problem(NamedTuple):
    """One thing wrong with a spec: where (JSON path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<top>'}: {self.message}"


class ConfigdriveError(Exception):
    """Base of every error with a user-facing ``str()``; ``exit_code`` is the CLI's status."""

    exit_code = 1


class Failure(ConfigdriveError):
    """What was asked could not be done (exit status 1)."""


class BadInput(ConfigdriveError):
    """A mistake in what the user gave: spec, option, configuration (exit status 2)."""

    exit_code = 2


class SpecError(BadInput):
    """A spec file that cannot become an Instance. Carries every problem found."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"{self.source}: {p}" for p in self.problems)


# Deeper than any real spec (network_data is five levels, vendor data rarely
# ten), and far below where a parser or Python's recursion limit would stop
# first: so a too-deep document always gets this project's error, with its line.
MAX_NESTING = 100


def json_path(parts: Any) -> str:
    """``["nics", 1, "subnets", 0, "cidr"]`` -> ``nics[1].subnets[0].cidr``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
