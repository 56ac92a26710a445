"""A quick yes/no JSON Schema check, so valid specs never import jsonschema.

jsonschema stays the authority: it finds and explains every problem (JSON
paths, "did you mean" hints), but importing it costs ~100 ms of a CLI run and
a validation ~2 ms. Most specs are valid, so :func:`certainly_valid` answers
only "yes, valid" or "ask jsonschema": it knows the keywords our schemas use,
applies them at least as strictly as jsonschema, and gives up (returns False)
on any keyword, ``$ref`` or value kind it does not know. A False costs only
the full validation that would have run anyway, so it can never change a
result; a wrong True could, which is why every rule below errs towards False.
The schema is compiled once into nested closures (~0.2 ms per spec).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Keywords that never make an instance invalid.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description",
                          "default", "examples"})
# Exact Python types per JSON type. "integer" is int only (jsonschema also takes
# 2.0: a False here just defers to it); bool is never a number.
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "null": (type(None),), "integer": (int,), "number": (int, float),
}
_COMPILED: dict[int, tuple[Any, Check]] = {}


def certainly_valid(schema: dict[str, Any], instance: Any) -> bool:
    """True only if ``instance`` is valid against ``schema`` (draft 2020-12 subset)."""
    cached = _COMPILED.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = _COMPILED[id(schema)] = (schema, _compile(schema, schema, {}))
    return cached[1](instance)


def _never(instance: Any) -> bool:
    return False


def _compile(schema: Any, root: dict[str, Any], refs: dict[str, Check]) -> Check:
    """One function checking every keyword of ``schema``."""
    if schema is True:
        return lambda instance: True
    if not isinstance(schema, dict):
        return _never
    checks = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        make = _KEYWORDS.get(keyword)
        if make is None:
            return _never
        checks.append(make(value, schema, root, refs))
    if len(checks) == 1:
        return checks[0]
    return lambda instance: all(check(instance) for check in checks)


def _type(value: Any, schema: dict, root: dict, refs: dict) -> Check:
    names = value if isinstance(value, list) else [value]
    if not all(isinstance(name, str) and name in _TYPES for name in names):
        return _never
    kinds = frozenset(kind for name in names for kind in _TYPES[name])
    return lambda instance: type(instance) in kinds  # exact types: True is a bool, never an int


def _properties(value: dict, schema: dict, root: dict, refs: dict) -> Check:
    subs = [(key, _compile(sub, root, refs)) for key, sub in value.items()]

    def check(instance: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        return all(key not in instance or sub(instance[key]) for key, sub in subs)
    return check


def _additional(value: Any, schema: dict, root: dict, refs: dict) -> Check:
    if "patternProperties" in schema:
        return _never
    known = frozenset(schema.get("properties", {}))
    if value is False:
        return lambda instance: not isinstance(instance, dict) or known.issuperset(instance)
    sub = _compile(value, root, refs)
    return lambda instance: not isinstance(instance, dict) or all(
        sub(item) for key, item in instance.items() if key not in known)


def _required(value: list, schema: dict, root: dict, refs: dict) -> Check:
    return lambda instance: not isinstance(instance, dict) or all(key in instance for key in value)


def _items(value: Any, schema: dict, root: dict, refs: dict) -> Check:
    sub = _compile(value, root, refs)
    return lambda instance: not isinstance(instance, list) or all(sub(item) for item in instance)


def _enum(value: list, schema: dict, root: dict, refs: dict) -> Check:
    # Scalars only, compared with their type (JSON's true is not 1); others defer.
    choices = frozenset((type(c), c) for c in value if isinstance(c, (str, int, float, type(None))))
    return lambda instance: isinstance(instance, (str, int, float, type(None))) and \
        (type(instance), instance) in choices


def _number_bound(test: Callable[[Any, Any], bool]) -> Callable[..., Check]:
    def make(value: Any, schema: dict, root: dict, refs: dict) -> Check:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _never
        return lambda instance: isinstance(instance, bool) or not isinstance(instance, (int, float)) \
            or test(instance, value)
    return make


def _size_bound(kind: type, test: Callable[[int, Any], bool]) -> Callable[..., Check]:
    def make(value: Any, schema: dict, root: dict, refs: dict) -> Check:
        return lambda instance: not isinstance(instance, kind) or test(len(instance), value)  # type: ignore[arg-type]
    return make


def _unique(value: Any, schema: dict, root: dict, refs: dict) -> Check:
    if value is False:
        return lambda instance: True

    def check(instance: Any) -> bool:
        if not isinstance(instance, list):
            return True
        # Only plain strings or ints are compared here; anything else defers.
        if not all(type(item) in (int, str) for item in instance):
            return False
        return len({(type(item), item) for item in instance}) == len(instance)
    return check if value is True else _never


def _ref(value: Any, schema: dict, root: dict, refs: dict) -> Check:
    prefix = "#/$defs/"
    if not isinstance(value, str) or not value.startswith(prefix):
        return _never
    name = value[len(prefix):]
    if any(c in name for c in "/~%") or name not in root.get("$defs", {}):
        return _never  # escaped pointers or other documents: defer
    if name not in refs:  # compiled once; the indirection allows recursive schemas
        refs[name] = _never
        compiled = _compile(root["$defs"][name], root, refs)
        refs[name] = compiled
    return lambda instance: refs[name](instance)


_KEYWORDS: dict[str, Callable[[Any, dict, dict, dict], Check]] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "items": _items,
    "enum": _enum,
    "minimum": _number_bound(lambda x, bound: x >= bound),
    "maximum": _number_bound(lambda x, bound: x <= bound),
    "minItems": _size_bound(list, lambda n, bound: n >= bound),
    "maxItems": _size_bound(list, lambda n, bound: n <= bound),
    "minLength": _size_bound(str, lambda n, bound: n >= bound),
    "maxLength": _size_bound(str, lambda n, bound: n <= bound),
    "minProperties": _size_bound(dict, lambda n, bound: n >= bound),
    "maxProperties": _size_bound(dict, lambda n, bound: n <= bound),
    "uniqueItems": _unique,
    "$ref": _ref,
}
