"""Vendor data sources: the static file (vendor_data.json) and dynamic REST
targets (vendor_data2.json), as Nova's ``vendordata_dynamic_targets``.

A target is ``name@url``. Each gets Nova's POST body; a failure (unreachable,
timeout, HTTP error, not JSON) yields ``{}`` and a log line, unless failures
are configured fatal, in which case the request fails with 500. Targets are
asked lazily, only when vendor_data2.json is rendered, and the answer lives
as long as the instance's cache entry (the TTL), as in Nova.
"""
from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from metadata_content.model import Instance

log = logging.getLogger("configdrive.api")


class VendorDataError(Exception):
    """A dynamic target failed and failures are fatal."""


def load_static(path: str | None) -> dict[str, Any] | None:
    """The static vendor data file (JSON object), or None when not configured."""
    if not path:
        return None
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: vendor data must be a JSON object")
    return doc


def request_body(instance: Instance) -> dict[str, Any]:
    """What Nova POSTs to a target (user-data is base64 text, as Nova stores it)."""
    user_data = base64.b64encode(instance.user_data).decode() if instance.user_data is not None else None
    return {"project-id": instance.project_id, "instance-id": instance.uuid,
            "image-id": instance.image_id, "user-data": user_data,
            "hostname": instance.hostname, "metadata": dict(instance.meta), "boot-roles": ""}


def fetch(name: str, url: str, instance: Instance, timeout: float, fatal: bool) -> Any:
    data = json.dumps(request_body(instance)).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json",
        "User-Agent": "configdrive-vendordata"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError, urllib.error.URLError) as exc:
        log.warning("vendor data target %s at %s failed for %s: %s", name, url, instance.uuid, exc)
        if fatal:
            raise VendorDataError(f"vendor data target {name} failed: {exc}") from exc
        return {}


def ask_targets(instance: Instance, targets: list[str], timeout: float, fatal: bool) -> dict[str, Any]:
    """Every dynamic target's answer by name. MetadataTree calls this (through a
    partial) only when it renders vendor_data2.json, once per tree."""
    answers: dict[str, Any] = {}
    for target in targets:
        name, _, url = target.partition("@")
        if name and url and name not in answers:  # Nova skips nameless and repeated targets
            answers[name] = fetch(name, url, instance, timeout, fatal)
    return answers
