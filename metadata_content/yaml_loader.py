"""A safe YAML loader without YAML 1.1's traps for instance specs.

PyYAML follows YAML 1.1, where ``52:54:00:12:34:56`` (a MAC) is a base-60
integer, ``no`` is False and ``0755`` is octal. Specs are full of MACs and
short words, so this loader keeps only JSON-like scalars (true/false, null,
decimal ints and floats) and refuses duplicate keys instead of silently
keeping the last one. It also refuses what JSON cannot hold and the renderer
cannot write: other tags (``!!timestamp``, ``!!binary``, ``!!set``...),
aliases that make a value contain itself, and keys that are not strings
(JSON would write ``1`` and ``"1"`` as the same name twice).
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
        if not isinstance(key, str):  # JSON writes 1 and "1" alike: two keys, one name
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found key {key_node.value!r}, which is not a string (quote it)",
                key_node.start_mark)
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
    """An event the direct builder leaves to PyYAML's composer and constructor."""


_SCALARS = {tag: SpecLoader.yaml_constructors[tag] for tag in (
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null")}
# Deeper documents go to PyYAML, which builds recursively (~4 frames a level)
# and so either gives its own value or its RecursionError: never this
# builder's answer where PyYAML has none.
_MAX_DEPTH = 100


def load(text: str) -> Any:
    """``yaml.load(text, Loader=SpecLoader)``, ~3x faster for plain documents.

    A plain document (one document; no anchors, aliases or explicit tags;
    only string keys, none repeated) is built straight from libyaml's parse
    events: PyYAML would first compose a node per value (a Python resolver
    call and a node object each), then walk the nodes again through its
    generic constructor. Scalars that are not strings go through SpecLoader's
    own constructors, so values are the same. Every other document, and
    every error (a syntax error, ``1e999``), goes to PyYAML's composer and
    constructor whole, so its result and every message stay exactly PyYAML's.
    """
    try:
        return _load_plain(text)
    except (_Unsupported, yaml.YAMLError):
        pass
    loader = SpecLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _load_plain(text: str) -> Any:
    """The value of a plain document, or :class:`_Unsupported`."""
    loader = SpecLoader(text)
    try:
        next_event = loader.get_event
        next_event()  # StreamStartEvent
        if type(next_event()) is yaml.StreamEndEvent:
            return None  # an empty stream, as get_single_data gives
        value = _build(loader, next_event)
        if type(next_event()) is not yaml.DocumentEndEvent or \
                type(next_event()) is not yaml.StreamEndEvent:
            raise _Unsupported("more than one document")  # PyYAML words that error
        return value
    finally:
        loader.dispose()


def _build(loader: SpecLoader, next_event: Any) -> Any:
    """Build one document's value from its events, without recursion.

    ``stack`` holds the enclosing lists and dicts, and for a dict the key
    read last (``_NO_KEY`` while the next scalar or collection is a key).
    """
    resolvers = loader.yaml_implicit_resolvers
    stack: list[tuple[Any, Any]] = []
    container: Any = None
    key: Any = _NO_KEY
    while True:
        event = next_event()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.anchor is not None or event.tag not in (None, "!"):
                raise _Unsupported("anchor or explicit tag")
            value = event.value
            if event.implicit[0]:  # plain: true/false, null, numbers by the core schema
                for tag, regexp in resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        value = _SCALARS[tag](loader, yaml.ScalarNode(
                            tag, value, event.start_mark, event.end_mark))
                        break
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if event.anchor is not None or event.tag is not None:
                raise _Unsupported("anchor or explicit tag")
            if len(stack) >= _MAX_DEPTH:
                raise _Unsupported("nested deeply")
            stack.append((container, key))
            container, key = ({} if kind is yaml.MappingStartEvent else []), _NO_KEY
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            value = container
            container, key = stack.pop()
        else:
            raise _Unsupported(kind.__name__)  # an alias
        if container is None:
            return value
        if type(container) is list:
            container.append(value)
        elif key is _NO_KEY:
            if type(value) is not str or value in container:
                raise _Unsupported("a key that is not a string, or a duplicate")  # worded by PyYAML's path
            key = value
        else:
            container[key], key = value, _NO_KEY


_NO_KEY = object()
