"""Instance specs: YAML/JSON file -> validated, self-contained dict -> Instance.

Stages, each reporting every problem with the file and the JSON path:

    parse.py           text -> data (yaml_loader.py: YAML 1.2-like, no sexagesimal
                       MACs, no yes/no booleans, duplicate keys refused)
    schema.py          the packaged JSON Schema (schema_quick.py answers valid specs
                       without jsonschema; schema_words.py words the rest)
    files.py           files the spec refers to, inlined
    checks.py          what a schema cannot see (checks_network.py, network_schema.py
                       for a literal network_data; validators.py for single values)
    build_instance.py  defaults applied -> :class:`~metadata_content.model.Instance`
                       (addresses.py: each address parsed once, checks to model)

This module strings them together; nothing here renders or stores.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from metadata_content.errors import SpecError
from metadata_content.spec.addresses import Addresses
from metadata_content.spec.build_instance import build
from metadata_content.spec.checks import semantic_problems
from metadata_content.spec.files import inline_files, unresolved_files
from metadata_content.spec.parse import parse_file, surrogate_problems
from metadata_content.spec.schema import schema_problems

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance


def load_instance(path: str | Path) -> Instance:
    """Read, validate and build the instance described by the spec at *path*."""
    return load_spec(path)[1]


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec at *path* as a self-contained dict (referenced files inlined), validated."""
    return load_spec(path)[0]


def load_spec(path: str | Path) -> tuple[dict[str, Any], Instance]:
    """Both: the self-contained dict (what the store keeps) and its Instance."""
    path = Path(path)
    data = parse_file(path)
    problems = schema_problems(data)
    if problems:
        raise SpecError(str(path), problems)
    problems = inline_files(data, path.parent)
    if problems:
        raise SpecError(str(path), problems)
    return data, _checked_build(data, str(path))


def instance_from_data(data: Any, source: str, *, validated: bool = False) -> Instance:
    """Validate a self-contained spec dict and build its :class:`Instance`.

    ``validated=True`` skips the checks, for specs the store accepted through
    this same function: re-validating is ~90% of an API cache miss.
    """
    if validated:
        return build(data)
    problems = surrogate_problems(data) or schema_problems(data) or unresolved_files(data)
    if problems:
        raise SpecError(source, problems)
    return _checked_build(data, source)


def _checked_build(data: dict[str, Any], source: str) -> Instance:
    """Semantic checks and build, for a dict that already passed the schema."""
    addresses = Addresses()
    problems = semantic_problems(data, addresses)
    if problems:
        raise SpecError(source, problems)
    return build(data, addresses)
