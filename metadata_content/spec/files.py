"""Files a spec refers to (user data, injected files, keys), read relative to
the spec and inlined, so the store can keep a spec without its directory."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from metadata_content.errors import Problem


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


def unresolved_files(data: dict[str, Any]) -> list[Problem]:
    """A dict given without its directory must not refer to files."""
    found = []
    if isinstance(data.get("user_data"), dict) and "file" in data["user_data"]:
        found.append(Problem("user_data.file", "file references must be inlined (use read_spec)"))
    for name in ("files", "keys"):
        for i, item in enumerate(data.get(name, [])):
            if "file" in item:
                found.append(Problem(f"{name}[{i}].file", "file references must be inlined (use read_spec)"))
    return found
