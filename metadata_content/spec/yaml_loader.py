"""A safe YAML loader without YAML 1.1's traps for instance specs.

PyYAML follows YAML 1.1, where ``52:54:00:12:34:56`` (a MAC) is a base-60
integer, ``no`` is False and ``0755`` is octal. Specs are full of MACs and
short words, so this loader keeps only JSON-like scalars (true/false, null,
decimal ints and floats) and refuses duplicate keys instead of silently
keeping the last one. It also refuses what JSON cannot hold and the renderer
cannot write: other tags (``!!timestamp``, ``!!binary``, ``!!set``...),
aliases that make a value contain itself, and keys that are not strings
(JSON would write ``1`` and ``"1"`` as the same name twice).

Every problem comes out as :class:`SpecYAMLError`, worded here with its line
and column: the user reads this project's words, never a parser's, and a new
PyYAML or libyaml release cannot change what they read.
"""
from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import yaml

from metadata_content.errors import MAX_NESTING

# libyaml's parser when present (PyYAML's pure-Python scanner costs ~15 ms on a
# rich spec). Resolution and construction stay in Python, so values are the
# same; parsing is not quite: libyaml accepts some documents the pure-Python
# scanner refuses (a tab after "a:") and words its errors differently.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecYAMLError(Exception):
    """A document that is not a spec's YAML: what is wrong, and where (1-based)."""

    def __init__(self, message: str, mark: Any = None):
        self.message = message
        self.line = mark.line + 1 if mark is not None else None
        self.column = mark.column + 1 if mark is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.message} (line {self.line}, column {self.column})"


class SpecLoader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.recursive_objects:  # PyYAML would word this itself
            raise SpecYAMLError("an alias makes this value contain itself", node.start_mark)
        return super().construct_object(node, deep)


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
    raise SpecYAMLError(f"tag {tag!r} is not supported: a spec holds only strings, numbers, "
                        "true/false, null, lists and mappings", node.start_mark)


def _checked(construct: Any) -> Any:
    """A scalar constructor whose bad value (``!!int 0x10``, ``!!bool maybe``) is a YAML error, not a crash."""
    def checked(loader: SpecLoader, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise SpecYAMLError(f"{node.value!r} is not a valid {tag} value", node.start_mark) from None
    return checked


def _int_decimal(loader: SpecLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node))  # decimal only: 0755 stays 755, never octal


def _float_finite(loader: SpecLoader, node: yaml.ScalarNode) -> float:
    """A float JSON can write: ``1.0e999`` or ``!!float .inf`` would reach guests as ``Infinity``."""
    value = yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)
    if not math.isfinite(value):
        raise SpecYAMLError(f"{node.value!r} is not a finite number (JSON has no infinity or NaN)",
                            node.start_mark)
    return value


def _sequence(loader: SpecLoader, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
    """Built at once, not by PyYAML's generator: a list that contains itself is then refused."""
    return loader.construct_sequence(node, deep=deep)


def _mapping_no_duplicates(loader: SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict)):
            raise SpecYAMLError("found a list or mapping as a key (keys are strings)", key_node.start_mark)
        if not isinstance(key, str):  # JSON writes 1 and "1" alike: two keys, one name
            raise SpecYAMLError(f"found key {key_node.value!r}, which is not a string (quote it)",
                                key_node.start_mark)
        if key in seen:
            raise SpecYAMLError(f"found duplicate key {key!r}", key_node.start_mark)
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
    """A document the event builder leaves to PyYAML's composer and constructor."""


_SCALARS = {tag: SpecLoader.yaml_constructors[tag] for tag in (
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null")}


def load(text: str) -> Any:
    """The value of a spec's YAML *text*, or :class:`SpecYAMLError`.

    A plain document (one document; no anchors, aliases or explicit tags;
    only string keys, none repeated) is built straight from libyaml's parse
    events, ~3x faster than PyYAML, which would first compose a node per
    value and then walk the nodes again through its generic constructor.
    Scalars that are not strings go through SpecLoader's own constructors,
    so values are the same. Every other document is checked in one pass over
    its events (nesting, documents, aliases), then built by PyYAML.
    """
    try:
        return _load_plain(text)
    except _Unsupported:
        pass
    except yaml.YAMLError as exc:
        raise _worded(exc, text) from None
    _check_events(text)
    loader = SpecLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _worded(exc, text) from None
    finally:
        loader.dispose()


# Far above any real spec (the rich sample holds a few hundred values); only
# aliases can make a value this large from a small text.
MAX_VALUES = 100_000


def _too_deep(mark: Any) -> SpecYAMLError:
    return SpecYAMLError(f"nested too deeply (more than {MAX_NESTING} levels of lists and mappings)", mark)


class _Scan(NamedTuple):
    problem: SpecYAMLError | None  # the first thing PyYAML's composer would word itself, or miss
    error: yaml.YAMLError | None  # the parser's own error, where it stopped
    depth: int  # nesting reached by the last event
    end: int  # where the last event ended


def _scan(text: str) -> _Scan:
    """One pass over the parse events: nesting, aliases, documents.

    What PyYAML's composer would refuse in its own words (an undefined alias,
    a second document), or never reach (its recursion gives up a few hundred
    levels down), is found here and worded by us.
    """
    depth = documents = end = 0
    sizes: dict[str, int] = {}  # anchor -> how many values its node holds, aliases expanded
    open_: list[list[Any]] = []  # [anchor, values so far] of each collection not yet closed
    problem = None
    try:
        for event in yaml.parse(text, Loader=SpecLoader):
            kind = type(event)
            done = 0  # values a node completed by this event holds
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    problem = SpecYAMLError(f"alias *{event.anchor} has no anchor &{event.anchor} before it",
                                            event.start_mark)
                else:
                    done = sizes[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                done = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    problem = _too_deep(event.start_mark)
                open_.append([event.anchor, 1])
                if event.anchor is not None:  # an alias inside it is a cycle: construction words that
                    sizes[event.anchor] = 1
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                depth -= 1
                anchor, done = open_.pop()
                if anchor is not None:
                    sizes[anchor] = done
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    problem = SpecYAMLError("a second document starts here: a spec is one document",
                                            event.start_mark)
            if done and open_:
                open_[-1][1] += done
                if open_[-1][1] > MAX_VALUES:  # aliases of aliases: a small text, a huge value
                    problem = SpecYAMLError(f"aliases expand this document to more than {MAX_VALUES:,} values",
                                            event.start_mark)
            if problem is not None:
                return _Scan(problem, None, depth, end)
            end = event.end_mark.index if event.end_mark is not None else end
    except yaml.YAMLError as exc:
        return _Scan(None, exc, depth, end)
    return _Scan(None, None, depth, end)


def _check_events(text: str) -> None:
    scan = _scan(text)
    if scan.problem is not None:
        raise scan.problem
    if scan.error is not None:
        raise _worded(scan.error, text)


_FLOW_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|(?:^|(?<=\s))#[^\n]*|[\[{]|[\]}]""", re.M)


def _flow_too_deep(text: str, start: int, end: int, depth: int) -> SpecYAMLError | None:
    """A level past the limit between *start* and *end*, counting from *depth*.

    libyaml reads far ahead in flow style (``[[[...``) and stops at its own
    nesting limit before the events that would reach ours: so the brackets
    after the last event, up to where the parser stopped, are counted here.
    """
    for match in _FLOW_TOKENS.finditer(text, start, end):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                at = match.start()
                line_start = text.rfind("\n", 0, at) + 1
                return _too_deep(yaml.Mark("", at, text.count("\n", 0, at), at - line_start, "", 0))
        elif token in ("]", "}"):
            depth -= 1
    return None


def _worded(exc: yaml.YAMLError, text: str) -> SpecYAMLError:
    """A parser's error in this project's words, at the parser's place."""
    mark: Any = getattr(exc, "problem_mark", None)
    scan = _scan(text)  # our own finding before the parser's place comes first
    if scan.problem is not None:
        return scan.problem
    deep = _flow_too_deep(text, scan.end, mark.index if mark is not None else len(text), scan.depth)
    if deep is not None:
        return deep
    if isinstance(exc, yaml.reader.ReaderError):
        where = text.count("\n", 0, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return SpecYAMLError(f"character U+{code:04X} is not allowed in YAML (line {where + 1})")
    if mark is not None and text[mark.index:mark.index + 1] == "\t":
        return SpecYAMLError("a tab character here (YAML indents with spaces only)", mark)
    if isinstance(exc, yaml.scanner.ScannerError):
        return SpecYAMLError("not valid YAML syntax here (an unclosed quote or bracket, a stray "
                             "character, or a ':' or '-' without a space after it)", mark)
    if isinstance(exc, yaml.parser.ParserError):
        return SpecYAMLError("unexpected text here (check the indentation, the ':' after each key, "
                             "and that every bracket and quote is closed)", mark)
    if isinstance(exc, yaml.constructor.ConstructorError):
        return SpecYAMLError("this value does not fit its tag", mark)
    return SpecYAMLError("not valid YAML here", mark)


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
            raise _Unsupported("more than one document")  # _check_events words that error
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
            if len(stack) >= MAX_NESTING:
                raise _too_deep(event.start_mark)
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
                raise _Unsupported("a key that is not a string, or a duplicate")  # worded by SpecLoader's constructor
            key = value
        else:
            container[key], key = value, _NO_KEY


_NO_KEY = object()
