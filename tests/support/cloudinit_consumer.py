"""Ask Debian's real cloud-init (22.4.2) what it reads from our metadata.

cloud-init is the consumer that matters, so compatibility is proven by its
own readers, not by re-implementing them. Its modules live in Debian's
`cloud-init` package and run only under /usr/bin/python3, so every call runs
tests/support/cloudinit_probe.py in a subprocess (optionally inside a network
namespace) and returns the JSON it prints:

    read_config_drive_dir(path, known_macs)  ConfigDriveReader(path).read_v2()
                                             + convert_net_json(...) as "converted_network"
    read_http_openstack(base_url)            MetadataReader(base_url).read_v2(), its
                                             EC2 part pointed at base_url too
    crawl_ec2(base_url)                      ec2 get_instance_metadata/_userdata, 2009-04-04

Every result also carries "base64_fields" (key paths whose bytes were sent as
base64: userdata, files/*, metadata/random_seed ...), "log" (cloud-init's
warnings; the EC2 crawler hides failures there and returns {}),
"cloudinit_version", and for HTTP "requests" (every URL fetched, in order).
A reader exception raises CloudInitError carrying cloud-init's traceback; a
machine without cloud-init raises CloudInitUnavailable, so tests fail rather
than skip.

static_http_server(paths) serves a dict of path -> bytes on 127.0.0.1 for
tests that feed a rendered tree to cloud-init without the real server.
"""
from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DEBIAN_PYTHON = "/usr/bin/python3"
PROBE = Path(__file__).with_name("cloudinit_probe.py")
INSTALL_HINT = "install Debian's cloud-init package: apt-get install cloud-init (scripts/debian-packages.txt)"

__all__ = [
    "CloudInitError",
    "CloudInitUnavailable",
    "b64decode_field",
    "crawl_ec2",
    "read_config_drive_dir",
    "read_http_openstack",
    "static_http_server",
]


class CloudInitUnavailable(RuntimeError):
    """Debian's python3 or its cloudinit package is missing."""


class CloudInitError(RuntimeError):
    """cloud-init's reader raised; ``traceback`` is cloud-init's own."""

    def __init__(self, error: str, traceback: str, log: list[str]):
        self.error, self.traceback, self.log = error, traceback, log
        super().__init__(f"cloud-init failed: {error}\n{traceback}")


def _run_probe(args: list[str], netns: str | None = None, timeout: float = 120) -> dict[str, Any]:
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        raise CloudInitUnavailable(f"{DEBIAN_PYTHON} not found; {INSTALL_HINT}")
    # -I: ignore the venv's PYTHON* variables. Proxy variables are dropped
    # because cloud-init uses requests, which would send 127.0.0.1 to a proxy.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    cmd = [DEBIAN_PYTHON, "-I", str(PROBE), *args]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    try:
        answer: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"probe gave no JSON (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"stdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    if answer.get("unavailable"):
        raise CloudInitUnavailable(f"cloudinit not importable by {DEBIAN_PYTHON} ({answer['error']}); {INSTALL_HINT}")
    if not answer["ok"]:
        raise CloudInitError(answer["error"], answer["traceback"], answer.get("log", []))
    result: dict[str, Any] = answer["result"]
    return result


def read_config_drive_dir(path: str | os.PathLike[str], known_macs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What cloud-init's ConfigDriveReader reads from an extracted drive tree.

    ``known_macs`` is cloud-init's own {mac: interface name} map, used to name
    physical links; None lets cloud-init look at this machine's interfaces.
    "converted_network" is present when the drive has network_data.json.
    """
    args = ["drive", os.fspath(path)]
    for mac, name in (known_macs or {}).items():
        args += ["--mac", f"{name}={mac}"]
    return _run_probe(args)


def read_http_openstack(base_url: str, netns: str | None = None, timeout: float = 5,
                        retries: int = 0) -> dict[str, Any]:
    """What cloud-init's MetadataReader reads from ``base_url`` (OpenStack tree plus EC2 meta-data).

    retries defaults to 0 (cloud-init's is 5, each after a 1 s sleep) so that a
    failing server fails the test at once instead of slowly.
    """
    return _run_probe(["http-openstack", base_url, "--timeout", str(timeout), "--retries", str(retries)], netns)


def crawl_ec2(base_url: str, netns: str | None = None, timeout: float = 5, retries: int = 0) -> dict[str, Any]:
    """cloud-init's EC2 crawl of ``base_url``/2009-04-04: {"meta-data", "user-data", "requests", ...}."""
    return _run_probe(["ec2", base_url, "--timeout", str(timeout), "--retries", str(retries)], netns)


def b64decode_field(result: Mapping[str, Any], *keys: str) -> bytes:
    """The bytes at ``result[k1][k2]...``; a str that cloud-init returned (e.g. absent user data) is UTF-8 encoded."""
    value: Any = result
    for key in keys:
        value = value[key]
    if list(keys) in result["base64_fields"]:
        return base64.b64decode(value)
    return str(value).encode()


@contextlib.contextmanager
def static_http_server(paths: Mapping[str, bytes], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``paths`` ({"/openstack": b"...", ...}) and yield the base URL; anything else is 404.

    Paths are matched exactly, so a trailing slash is part of the key, as it
    is for EC2 directory listings that cloud-init requests ("meta-data/").
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = paths.get(self.path.split("?", 1)[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
