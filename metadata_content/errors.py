"""Errors a user can cause, with the file and JSON path that caused them."""
from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    """One thing wrong with a spec: where (JSON path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<top>'}: {self.message}"


class SpecError(Exception):
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
