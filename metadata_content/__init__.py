"""metadata_content: the one model every output of configdrive renders from.

    instance = load_instance("samples/rich.yaml")      # spec -> Instance (validated)
    tree = MetadataTree(instance)                       # Instance -> paths -> bytes
    tree.lookup("/openstack/latest/meta_data.json")     # -> Answer(status, content_type, body)
    tree.drive_files()                                  # -> {"openstack/latest/meta_data.json": b"...", ...}

Nothing outside this package formats a listing or a JSON file for a guest.
The layout follows the data, and imports point one way (tests/test_layout.py):

    spec/        file -> validated data -> Instance (errors name file, field, line)
    schemas/     the JSON Schemas and their loader
    model.py     Instance and its parts: immutable values, nothing rendered
    render/      Instance -> MetadataTree -> bytes (the only renderer)
    errors.py    what a user can cause, with its exit status
    store.py     registered instances (SQLite or PostgreSQL), for the services
                 and the CLI; the model, spec and render never import it
    server/      the HTTP services (API, agent) over the tree and the store
    chain/       operating haproxy, namespaces, dnsmasq, the lab, doctor
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Answer", "Instance", "MetadataTree", "SpecError", "load_instance", "load_spec"]

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.errors import SpecError
    from metadata_content.model import Instance
    from metadata_content.render.tree import Answer, MetadataTree
    from metadata_content.spec import load_instance, load_spec

_LAZY = {
    "load_instance": "metadata_content.spec",
    "load_spec": "metadata_content.spec",
    "MetadataTree": "metadata_content.render.tree",
    "Answer": "metadata_content.render.tree",
    "SpecError": "metadata_content.errors",
    "Instance": "metadata_content.model",
}


def __getattr__(name: str) -> Any:
    """Import submodules on first use, so a CLI that needs one part pays for one part."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
