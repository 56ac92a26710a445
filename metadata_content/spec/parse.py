"""Spec text -> plain data: YAML (our loader) or JSON, with this project's
nesting limit and its own words for every mistake, with the line."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from metadata_content.errors import MAX_NESTING, Problem, SpecError


def parse_file(path: Path) -> Any:
    """YAML or JSON by content (JSON is YAML); errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), [Problem("", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError(str(path), [Problem("", "is a directory, not a spec file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [Problem("", f"cannot read: {exc}")]) from None
    if path.suffix == ".json":
        data = _parse_json(text, str(path))
    else:
        from metadata_content.spec import yaml_loader  # here: a JSON spec never imports yaml

        try:
            data = yaml_loader.load(text)
        except yaml_loader.SpecYAMLError as exc:
            raise SpecError(str(path), [Problem("", f"invalid YAML: {exc}")]) from None
    problems = surrogate_problems(data)
    if problems:
        raise SpecError(str(path), problems)
    return data


def surrogate_problems(value: Any, where: str = "") -> list[Problem]:
    """Strings holding a lone UTF-16 surrogate (JSON's "\\ud800"): no UTF-8 text can
    carry them, so every later stage (checks, rendering, the store) would fail."""
    if isinstance(value, str):
        return [Problem(where, "contains a lone UTF-16 surrogate (not valid Unicode text)")] \
            if _SURROGATE.search(value) else []
    problems: list[Problem] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _SURROGATE.search(key):
                problems.append(Problem(where, f"key {key!a} "
                                               f"contains a lone UTF-16 surrogate (not valid Unicode text)"))
                continue
            problems += surrogate_problems(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems += surrogate_problems(item, f"{where}[{i}]")
    return problems


_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_json(text: str, source: str) -> Any:
    """json.loads, with this project's nesting limit and words for its errors."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int,
                          object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise SpecError(source, [Problem("", f"invalid JSON: {exc.msg} (line {exc.lineno}, "
                                             f"column {exc.colno})")]) from None
    except ValueError as exc:  # raised by the hooks below, worded there
        raise SpecError(source, [Problem("", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        data = None  # deeper than the interpreter allows: certainly over the limit
    else:
        if _depth_within(data, MAX_NESTING):
            return data
    line = _line_too_deep(text)
    raise SpecError(source, [Problem("", f"invalid JSON: nested too deeply (more than {MAX_NESTING} "
                                         f"levels of arrays and objects) (line {line})")])


def _depth_within(value: Any, limit: int) -> bool:
    """Whether no array or object in *value* lies more than *limit* levels deep."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(limit):
        if not level:
            return True
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
    return not level


def _line_too_deep(text: str) -> int:
    """The line of the first bracket that opens a level past the limit (the text is valid JSON
    or too deep to parse, so brackets outside strings are its structure)."""
    depth = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return text.count("\n", 0, match.start()) + 1
        elif token in "]}":
            depth -= 1
    return 1


def _no_constant(name: str) -> Any:
    """json.loads takes Infinity and NaN; guests' JSON cannot hold them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """``1e999`` is infinite as a float: the drive's JSON would carry ``Infinity``."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    """Python refuses over 4,300 digits in its own words; no spec value comes near."""
    if len(text) > 1000:
        raise ValueError(f"a number of {len(text)} digits is too long")
    return int(text)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys; a spec means one of them (YAML refuses too)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found
