"""The packaged JSON Schemas (instance specs, network_data.json) and their loader."""
from __future__ import annotations

import json
import os
from functools import cache
from typing import Any


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema file *name* of this package, read once; callers must not change it.

    Read through the package's loader (works from a wheel or a zip), as
    pkgutil.get_data does, without importing pkgutil or importlib.resources.
    """
    assert __spec__ is not None and __spec__.loader is not None, "metadata_content.schemas has no loader"
    data = __spec__.loader.get_data(os.path.join(os.path.dirname(__file__), name))  # type: ignore[attr-defined]
    schema: dict[str, Any] = json.loads(data)
    return schema
