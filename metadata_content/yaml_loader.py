"""A safe YAML loader without YAML 1.1's traps for instance specs.

PyYAML follows YAML 1.1, where ``52:54:00:12:34:56`` (a MAC) is a base-60
integer, ``no`` is False and ``0755`` is octal. Specs are full of MACs and
short words, so this loader keeps only JSON-like scalars (true/false, null,
decimal ints and floats) and refuses duplicate keys instead of silently
keeping the last one.
"""
from __future__ import annotations

import re
from typing import Any

import yaml


# libyaml's parser when present (PyYAML's pure-Python scanner costs ~15 ms on a
# rich spec); resolution and construction stay in Python, so behaviour is equal.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecLoader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key errors."""


# Start from no implicit resolvers, then add the YAML 1.2 core ones we want.
SpecLoader.yaml_implicit_resolvers = {}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"), list("-+0123456789."))


def _int_decimal(loader: SpecLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node))  # decimal only: 0755 stays 755, never octal


def _mapping_no_duplicates(loader: SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = 1
    return loader.construct_mapping(node, deep=deep)


SpecLoader.add_constructor("tag:yaml.org,2002:int", _int_decimal)
SpecLoader.add_constructor("tag:yaml.org,2002:map", _mapping_no_duplicates)


class _Unsupported(Exception):
    """A node the direct builder leaves to PyYAML's constructor."""


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_SCALARS = {tag: SpecLoader.yaml_constructors[tag] for tag in (
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null")}


def load(text: str) -> Any:
    """``yaml.load(text, Loader=SpecLoader)``, ~3x faster for plain documents.

    PyYAML's constructor spends most of a spec's load in generic machinery
    (state generators, per-node dispatch). Here strings, lists and dicts are
    built directly from the composed nodes and other scalars by SpecLoader's
    own constructors. Anything else (explicit tags, merge keys) and every
    error, duplicate keys included, goes to PyYAML's constructor for the whole
    document, so the result and every message stay exactly PyYAML's.
    """
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _build(loader, node, {})
        except (_Unsupported, yaml.YAMLError, TypeError, ValueError):
            return loader.construct_document(node)
    finally:
        loader.dispose()


def _build(loader: SpecLoader, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """The value of ``node``; ``memo`` keeps aliases (one node, many uses) one object."""
    if id(node) in memo:
        return memo[id(node)]
    kind, tag = type(node), node.tag
    if kind is yaml.ScalarNode:
        if tag == _STR:
            return node.value
        constructor = _SCALARS.get(tag)
        if constructor is None:
            raise _Unsupported(tag)
        return constructor(loader, node)
    if kind is yaml.SequenceNode and tag == _SEQ:
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_build(loader, child, memo) for child in node.value)
        return items
    if kind is yaml.MappingNode and tag == _MAP:
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                raise _Unsupported(_MERGE)
            key = _build(loader, key_node, memo)
            if key in mapping:
                raise _Unsupported("duplicate key")  # PyYAML's constructor words the error
            mapping[key] = _build(loader, value_node, memo)
        return mapping
    raise _Unsupported(tag)
