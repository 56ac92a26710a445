"""JSON Schema violations in this project's words.

jsonschema's messages are its own and change between releases; a user sees
these instead, built only from the rule that failed, its value and the value
found, so a new jsonschema release cannot change what a bad spec prints.
"""
from __future__ import annotations

from typing import Any

_RULES = {
    "minimum": "must be at least {limit}, not {value!r}",
    "maximum": "must be at most {limit}, not {value!r}",
    "minLength": "must be at least {limit} character(s) long",
    "maxLength": "must be at most {limit} characters long, not {size}",
    "minItems": "must have at least {limit} item(s)",
    "maxItems": "must have at most {limit} items, not {size}",
    "uniqueItems": "must not list the same item twice",
    "minProperties": "must have at least {limit} key(s)",
    "maxProperties": "must have at most {limit} key(s), not {size}",
    "const": "must be {limit!r}, not {value!r}",
    "pattern": "{value!r} does not match the pattern {limit}",
    "format": "{value!r} is not a valid {limit}",
    "not": "is not allowed here",
}


def article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def reason(error: Any) -> str:
    """Why *error* (a jsonschema ValidationError) failed, in one line."""
    rule, limit, value = error.validator, error.validator_value, error.instance
    if rule == "type":
        expected = " or ".join(limit) if isinstance(limit, list) else limit
        return f"must be {article(expected)}, not {type(value).__name__} {value!r}"
    if rule == "enum":
        return f"{value!r} is not one of {', '.join(repr(c) for c in limit)}"
    if rule == "required":
        present = value if isinstance(value, dict) else {}
        return f"needs {', '.join(repr(k) for k in limit if k not in present)}"
    if rule in ("anyOf", "oneOf") and error.context:
        return " or ".join(dict.fromkeys(reason(sub) for sub in error.context))
    size = len(value) if isinstance(value, (str, list, dict)) else None
    return _RULES.get(rule, "is not allowed here (schema rule {rule!r})").format(
        limit=limit, value=value, size=size, rule=rule)
