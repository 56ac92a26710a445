"""Files a spec refers to (user data, injected files, keys), read relative to
the spec and inlined, so the store can keep a spec without its directory.

A spec is data, and whoever writes one must not be able to make the host hand
its own files to a guest (``../../etc/shadow``, a symbolic link), hang the
build (a FIFO) or exhaust its memory (``/dev/zero``). So a referenced file
must be a regular file inside the spec's directory (or a directory the
operator names in :data:`ALLOW_ENV`), no larger than its field's limit.
"""
from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

from metadata_content.errors import Problem

# Directories besides the spec's own that referenced files may lie in
# (os.pathsep-separated); set by the operator, never by a spec.
ALLOW_ENV = "CONFIGDRIVE_ALLOW_FILES_OUTSIDE"
# Raw bytes whose base64 still fits Nova's 65535-byte user-data limit (checks.USER_DATA_LIMIT).
USER_DATA_FILE_LIMIT = 3 * (65535 // 4)
# Nova's max_injected_file_content_bytes default.
INJECTED_FILE_LIMIT = 10240
# An SSH public key or an x509 certificate: a few KiB at most (RSA-16384 is ~2.8 KiB).
KEY_FILE_LIMIT = 16384


def allowed_roots(base: Path) -> list[Path]:
    """The spec's directory and those the operator allows, resolved."""
    extra = [Path(p) for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p]
    return [p.resolve() for p in (base, *extra)]


def read_referenced(base: Path, rel: str, limit: int) -> bytes:
    """The bytes of *rel* (relative to *base*); ValueError says why it is refused.

    The path is resolved first and checked against :func:`allowed_roots`; the
    resolved path is then opened with O_NOFOLLOW (a link swapped in meanwhile
    fails) and O_NONBLOCK (a FIFO does not block the open), and fstat must
    show a regular file within *limit* before anything is read.
    """
    target = (base / rel).resolve()
    if not any(target.is_relative_to(root) for root in allowed_roots(base)):
        raise ValueError(f"{rel!r} lies outside the spec's directory (the operator may allow a "
                         f"directory with {ALLOW_ENV})")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ValueError(f"cannot read {rel!r}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{rel!r} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{rel!r} is {info.st_size} bytes, over the limit of {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as stream:
            content = stream.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {rel!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(content) > limit:  # grew since fstat
        raise ValueError(f"{rel!r} is over the limit of {limit} bytes")
    return content


def inline_files(data: dict[str, Any], base: Path) -> list[Problem]:
    """Replace ``file:`` references by their content (relative to *base*), in place."""
    problems: list[Problem] = []

    def read(rel: str, where: str, limit: int) -> bytes | None:
        try:
            return read_referenced(base, rel, limit)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            return None

    user_data = data.get("user_data")
    if isinstance(user_data, dict) and "file" in user_data:
        content = read(user_data["file"], "user_data.file", USER_DATA_FILE_LIMIT)
        if content is not None:
            data["user_data"] = {"base64": base64.b64encode(content).decode()}
    for i, item in enumerate(data.get("files", [])):
        if "file" in item:
            content = read(item.pop("file"), f"files[{i}].file", INJECTED_FILE_LIMIT)
            if content is not None:
                item["content_base64"] = base64.b64encode(content).decode()
    for i, key in enumerate(data.get("keys", [])):
        if "file" in key:
            content = read(key.pop("file"), f"keys[{i}].file", KEY_FILE_LIMIT)
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
