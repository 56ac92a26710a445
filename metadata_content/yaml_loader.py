"""A safe YAML loader without YAML 1.1's traps for instance specs.

PyYAML follows YAML 1.1, where ``52:54:00:12:34:56`` (a MAC) is a base-60
integer, ``no`` is False and ``0755`` is octal. Specs are full of MACs and
short words, so this loader keeps only JSON-like scalars (true/false, null,
decimal ints and floats) and refuses duplicate keys instead of silently
keeping the last one. It also refuses what JSON cannot hold and the renderer
cannot write: other tags (``!!timestamp``, ``!!binary``, ``!!set``...) and
aliases that make a value contain itself.
"""
from __future__ import annotations

import math
import re
from typing import Any

import yaml


# libyaml's parser when present (PyYAML's pure-Python scanner costs ~15 ms on a
# rich spec). Resolution and construction stay in Python, so values are the
# same; parsing is not quite: libyaml accepts some documents the pure-Python
# scanner refuses (a tab after "a:") and words its errors differently.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class SpecLoader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key errors."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        """PyYAML's ``BaseResolver.resolve`` for a loader without path resolvers.

        libyaml's composer calls it for every node; the generic version pays
        for features no spec uses (path and wildcard resolvers).
        """
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


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


_JSON_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "seq", "map", "int", "float", "bool", "null")}


def _refuse_tag(loader: SpecLoader, node: yaml.Node) -> Any:
    """Any tag but the JSON ones: the renderer writes JSON, so a date or bytes would crash it."""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise yaml.constructor.ConstructorError(
        None, None, f"tag {tag!r} is not supported: a spec holds only strings, numbers, "
        "true/false, null, lists and mappings", node.start_mark)


def _checked(construct: Any) -> Any:
    """A scalar constructor whose bad value (``!!int 0x10``, ``!!bool maybe``) is a YAML error, not a crash."""
    def checked(loader: SpecLoader, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid {tag} value", node.start_mark) from None
    return checked


def _int_decimal(loader: SpecLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node))  # decimal only: 0755 stays 755, never octal


def _float_finite(loader: SpecLoader, node: yaml.ScalarNode) -> float:
    """A float JSON can write: ``1e999`` or ``!!float .inf`` would reach guests as ``Infinity``."""
    value = yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)
    if not math.isfinite(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a finite number (JSON has no infinity or NaN)",
            node.start_mark)
    return value


def _sequence(loader: SpecLoader, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
    """Built at once, not by PyYAML's generator: a list that contains itself is then refused."""
    return loader.construct_sequence(node, deep=deep)


def _mapping_no_duplicates(loader: SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found unhashable key", key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = 1
    return loader.construct_mapping(node, deep=deep)


SpecLoader.add_constructor("tag:yaml.org,2002:int", _int_decimal)
SpecLoader.add_constructor("tag:yaml.org,2002:float", _float_finite)
SpecLoader.add_constructor("tag:yaml.org,2002:seq", _sequence)
SpecLoader.add_constructor("tag:yaml.org,2002:map", _mapping_no_duplicates)
for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"):
    SpecLoader.add_constructor(_tag, _checked(SpecLoader.yaml_constructors[_tag]))
# SafeLoader also builds timestamps, binary, set, omap and pairs: none is JSON.
for _tag in [t for t in SpecLoader.yaml_constructors if t not in _JSON_TAGS]:
    del SpecLoader.yaml_constructors[_tag]
SpecLoader.add_constructor(None, _refuse_tag)  # PyYAML's fallback for every other tag


class _Unsupported(Exception):
    """A node the direct builder leaves to PyYAML's constructor."""


_MERGE = "tag:yaml.org,2002:merge"
_SCALARS = {tag: SpecLoader.yaml_constructors[tag] for tag in (
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null")}


def load(text: str) -> Any:
    """``yaml.load(text, Loader=SpecLoader)``, ~3x faster for plain documents.

    PyYAML's constructor spends most of a spec's load in generic machinery
    (state generators, per-node dispatch). Here strings, lists and dicts are
    built directly from the composed nodes and other scalars by SpecLoader's
    own constructors. Anything else (explicit tags, merge keys, alias cycles)
    and every error (duplicate keys, RecursionError) goes to PyYAML's
    constructor for the whole document, so the result and every message stay
    exactly PyYAML's.
    """
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _build(loader, node, {})
        except (_Unsupported, yaml.YAMLError, TypeError, ValueError, RecursionError):
            return loader.construct_document(node)
    finally:
        loader.dispose()


_BUILDING = object()  # memo value of a list or mapping whose items are being built


def _build(loader: SpecLoader, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """The value of ``node``; ``memo`` keeps aliases (one node, many uses) one object.

    An alias to a list or mapping still being built would make a value that
    contains itself (JSON cannot hold it): PyYAML's constructor refuses it.
    """
    if id(node) in memo:
        value = memo[id(node)]
        if value is _BUILDING:
            raise _Unsupported("recursive alias")
        return value
    kind, tag = type(node), node.tag
    if kind is yaml.ScalarNode:
        if tag == _STR:
            return node.value
        constructor = _SCALARS.get(tag)
        if constructor is None:
            raise _Unsupported(tag)
        return constructor(loader, node)
    if kind is yaml.SequenceNode and tag == _SEQ:
        memo[id(node)] = _BUILDING
        items = memo[id(node)] = _build_list(loader, node, memo)
        return items
    if kind is yaml.MappingNode and tag == _MAP:
        memo[id(node)] = _BUILDING
        mapping = memo[id(node)] = _build_mapping(loader, node, memo)
        return mapping
    raise _Unsupported(tag)


def _build_list(loader: SpecLoader, node: yaml.SequenceNode, memo: dict[int, Any]) -> list[Any]:
    """Items in order; a nested alias cycle reaches the sentinel in :func:`_build`."""
    items: list[Any] = []
    for child in node.value:
        # plain strings inline: most nodes are, and a call per node is most of the cost
        if type(child) is yaml.ScalarNode and child.tag == _STR:
            items.append(child.value)
        else:
            items.append(_build(loader, child, memo))
    return items


def _build_mapping(loader: SpecLoader, node: yaml.MappingNode, memo: dict[int, Any]) -> dict[Any, Any]:
    """Keys in order; merge keys and duplicates go to PyYAML's constructor."""
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            raise _Unsupported(_MERGE)
        key = key_node.value if key_node.tag == _STR and type(key_node) is yaml.ScalarNode \
            else _build(loader, key_node, memo)
        if key in mapping:
            raise _Unsupported("duplicate key")  # PyYAML's constructor words the error
        if type(value_node) is yaml.ScalarNode and value_node.tag == _STR:
            mapping[key] = value_node.value
        else:
            mapping[key] = _build(loader, value_node, memo)
    return mapping
