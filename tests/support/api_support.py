"""Shared pieces of the metadata API tests: a data dir with the samples
registered, signed headers, and every path of an instance's tree."""
from __future__ import annotations

from pathlib import Path

from metadata_content.render.tree import MetadataTree
from metadata_content.server.identity import proxy_headers
from tests.conftest import SAMPLES
from tests.support.apiserver import cli

SECRET = b"correct horse battery staple"
RICH = "fbe3b826-7673-4446-8f4c-ede1d2abd0e2"
RICH_PROJECT = "2a1f6a4e1c7b4a2f9a3d5e6f70819203"
WEB = "1281168b-3d3b-4ab0-b2db-115fb02e8d1f"
WEB_PROJECT = "6f70656e737461636b20697320636f6f"
WIN = "ac681a8a-c9bc-4544-a257-0301b95fce3c"
WIN_PROJECT = RICH_PROJECT  # same project as RICH: only the signature separates them
MINIMAL = "dc7c8e7d-a420-45fd-bc9f-ae0a16177f73"


def prepare(tmp: Path, *specs: str) -> tuple[Path, Path]:
    """(data dir, secret file) with *specs* (sample names) registered through the CLI."""
    data, secret = tmp / "data", tmp / "secret"
    secret.write_bytes(SECRET + b"\n")
    cli("instances", "--data-dir", str(data), "add", *(str(SAMPLES / f"{s}.yaml") for s in specs))
    return data, secret


def signed(instance_id: str, tenant: str | None, **extra: str) -> dict[str, str]:
    """The agent's headers (proxy_headers) with SECRET; tenant None leaves X-Tenant-ID
    out, *extra* adds or overrides headers, so tests can break one piece at a time."""
    headers = proxy_headers(SECRET, instance_id, tenant or "")
    if tenant is None:
        del headers["X-Tenant-ID"]
    return {**headers, **extra}


def all_paths(tree: MetadataTree) -> list[str]:
    """Every path a guest can GET, found by walking the listings from the roots."""
    found: list[str] = []

    def walk(path: str, is_dir: bool) -> None:
        found.append(path)
        if not is_dir:
            return
        answer = tree.lookup(path)
        assert answer.status == 200, path
        for line in answer.body.decode().split("\n"):
            if not line:
                continue
            if path == "/openstack":
                walk(f"/openstack/{line}", True)
            elif path.startswith("/openstack/"):
                walk(f"{path}/{line}", False)
            elif "=" in line:  # public-keys/ lists 0=name
                walk(f"{path}{line.split('=')[0]}/", True)
            elif line.endswith("/"):
                walk(f"{path}{line}", True)
            elif path == "/":
                walk(f"/{line}/", True)
            else:
                walk(f"{path}{line}", False)

    walk("/", True)
    walk("/openstack", True)
    return found
