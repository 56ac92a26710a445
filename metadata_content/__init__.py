"""metadata_content: the one model every output of configdrive renders from.

    instance = load_instance("samples/rich.yaml")      # spec -> Instance (validated)
    tree = MetadataTree(instance)                       # Instance -> paths -> bytes
    tree.lookup("/openstack/latest/meta_data.json")     # -> Answer(status, content_type, body)
    tree.drive_files()                                  # -> {"openstack/latest/meta_data.json": b"...", ...}

Nothing outside this package formats a listing or a JSON file for a guest.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Answer", "Instance", "MetadataTree", "SpecError", "load_instance", "load_spec"]

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.errors import SpecError
    from metadata_content.model import Instance
    from metadata_content.spec import load_instance, load_spec
    from metadata_content.tree import Answer, MetadataTree

_LAZY = {
    "load_instance": "metadata_content.spec",
    "load_spec": "metadata_content.spec",
    "MetadataTree": "metadata_content.tree",
    "Answer": "metadata_content.tree",
    "SpecError": "metadata_content.errors",
    "Instance": "metadata_content.model",
}


def __getattr__(name: str) -> Any:
    """Import submodules on first use, so a CLI that needs one part pays for one part."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
