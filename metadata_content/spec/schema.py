"""The instance schema: every violation as a :class:`Problem` at its JSON path.

Valid specs (the common case) are answered by :mod:`.schema_quick` without
importing jsonschema, which explains every invalid one.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from metadata_content.errors import Problem, json_path
from metadata_content.schemas import load_schema
from metadata_content.spec.schema_quick import certainly_valid
from metadata_content.spec.schema_words import reason


def _schema() -> dict[str, Any]:
    return load_schema("instance.schema.json")


@cache
def _validator() -> Any:
    # imported here: a valid spec (schema_quick says so) never pays for jsonschema
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


def schema_problems(data: Any) -> list[Problem]:
    """Every schema violation, one Problem each, naming the exact field."""
    if not isinstance(data, dict):
        return [Problem("", "a spec must be a mapping (YAML) or an object (JSON)")]
    if certainly_valid(_schema(), data):  # the common case, without importing jsonschema
        return []
    problems = []
    for error in _validator().iter_errors(data):
        problems.extend(_explain(error))
    return sorted(set(problems), key=lambda p: (p.path, p.message))


def _explain(error: Any) -> list[Problem]:
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        import difflib  # here: only an unknown key needs it (it imports gettext's locale machinery)

        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        out = []
        for key in extra:
            # a Python caller's dict may have keys that are not strings (the
            # loaders give strings only); difflib compares strings only.
            hint = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
            tip = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(allowed)})"
            out.append(Problem(json_path([*where, str(key)]), f"unknown key{tip}"))
        return out
    if error.validator == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        return [Problem(json_path([*where, key]), "is required")
                for key in error.validator_value if key not in present]
    if error.validator in ("minProperties", "maxProperties") and json_path(where) == "user_data":
        return [Problem("user_data", "give exactly one of text, base64 or file")]

    return [Problem(json_path(where), reason(error))]
