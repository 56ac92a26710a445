"""Instance specs: YAML/JSON file -> validated, self-contained dict -> Instance.

Three stages, each reporting every problem with the file and the JSON path:

1. parse (YAML 1.2-like: no sexagesimal MACs, no ``yes``/``no`` booleans,
   duplicate keys rejected);
2. the packaged JSON Schema (shape, unknown keys);
3. semantic checks (:mod:`metadata_content.checks`): addresses, CIDRs, MACs,
   UUIDs, hostnames, cross references, Nova's user-data limit.

Files a spec refers to (user data, injected files, keys) are read relative to
the spec and inlined, so the store can keep a spec without its directory.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metadata_content.errors import MAX_NESTING, Problem, SpecError
from metadata_content.schema_quick import certainly_valid

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
        from metadata_content.build_instance import build

        return build(data)
    problems = schema_problems(data) or _unresolved_files(data)
    if problems:
        raise SpecError(source, problems)
    return _checked_build(data, source)


def _checked_build(data: dict[str, Any], source: str) -> Instance:
    """Semantic checks and build, for a dict that already passed the schema."""
    from metadata_content.addresses import Addresses
    from metadata_content.build_instance import build
    from metadata_content.checks import semantic_problems

    addresses = Addresses()
    problems = semantic_problems(data, addresses)
    if problems:
        raise SpecError(source, problems)
    return build(data, addresses)


# -- parsing ------------------------------------------------------------------

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
        return _parse_json(text, str(path))
    from metadata_content import yaml_loader

    try:
        return yaml_loader.load(text)
    except yaml_loader.SpecYAMLError as exc:
        raise SpecError(str(path), [Problem("", f"invalid YAML: {exc}")]) from None


def _parse_json(text: str, source: str) -> Any:
    """json.loads, with this project's nesting limit and words for its errors."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(source, [Problem("", f"invalid JSON: {exc.msg} (line {exc.lineno}, "
                                             f"column {exc.colno})")]) from None
    except ValueError as exc:  # Infinity or NaN
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


# -- schema -------------------------------------------------------------------

@cache
def load_schema(name: str) -> dict[str, Any]:
    """A packaged ``schemas/<name>``, read once; callers must not change it.

    Read through the package's loader (works from a wheel or a zip), as
    pkgutil.get_data does, without importing pkgutil or importlib.resources.
    """
    assert __spec__ is not None and __spec__.loader is not None, "metadata_content has no loader"
    data = __spec__.loader.get_data(os.path.join(os.path.dirname(__file__), "schemas", name))  # type: ignore[attr-defined]
    schema: dict[str, Any] = json.loads(data)
    return schema


def _schema() -> dict[str, Any]:
    return load_schema("instance.schema.json")


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


def json_path(parts: Any) -> str:
    """``["nics", 1, "subnets", 0, "cidr"]`` -> ``nics[1].subnets[0].cidr``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
        import difflib

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
    from metadata_content.schema_words import reason

    return [Problem(json_path(where), reason(error))]


# -- referenced files ---------------------------------------------------------

def inline_files(data: dict[str, Any], base: Path) -> list[Problem]:
    """Replace ``file:`` references by their content (relative to *base*), in place."""
    problems: list[Problem] = []

    def read(rel: str, where: str) -> bytes | None:
        target = base / rel
        try:
            return target.read_bytes()
        except OSError as exc:
            problems.append(Problem(where, f"cannot read {str(target)!r}: {exc.strerror or exc}"))
            return None

    user_data = data.get("user_data")
    if isinstance(user_data, dict) and "file" in user_data:
        content = read(user_data["file"], "user_data.file")
        if content is not None:
            data["user_data"] = {"base64": base64.b64encode(content).decode()}
    for i, item in enumerate(data.get("files", [])):
        if "file" in item:
            content = read(item.pop("file"), f"files[{i}].file")
            if content is not None:
                item["content_base64"] = base64.b64encode(content).decode()
    for i, key in enumerate(data.get("keys", [])):
        if "file" in key:
            content = read(key.pop("file"), f"keys[{i}].file")
            if content is not None:
                try:
                    key["data"] = content.decode("utf-8").strip()
                except UnicodeDecodeError:
                    problems.append(Problem(f"keys[{i}].file", "is not UTF-8 text"))
    return problems


def _unresolved_files(data: dict[str, Any]) -> list[Problem]:
    """A dict given without its directory must not refer to files."""
    found = []
    if isinstance(data.get("user_data"), dict) and "file" in data["user_data"]:
        found.append(Problem("user_data.file", "file references must be inlined (use read_spec)"))
    for name in ("files", "keys"):
        for i, item in enumerate(data.get(name, [])):
            if "file" in item:
                found.append(Problem(f"{name}[{i}].file", "file references must be inlined (use read_spec)"))
    return found


def decode_base64(value: str) -> bytes | None:
    """Strict base64 (whitespace allowed), or None when it is not base64."""
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
