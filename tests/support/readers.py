"""Third-party metadata readers (glean, cloudbase-init, botocore) in a venv of
their own, and the probe that runs them.

The readers are installed from tests/readers.txt (hashed, compiled by
scripts/lock.sh from tests/readers.in), never into the project's .venv: a
guest installs them beside nothing of ours, and their dependencies (oslo,
requests, an older urllib3 ...) must not change what our own tests run with.
The venv is cached under ~/.cache/configdrive-tests/<hash of the lock>/venv,
built in a staging directory and renamed into place once complete, so an
interrupted install never leaves a half-made venv that later runs would
trust. A reader that cannot be installed fails the test (pip's error is in
the message); nothing is skipped.

Each reader runs in its own process, tests/support/readers_probe.py under the
venv's python, which prints one JSON object (see its docstring); Debian's
cloud-init renderers run the same way under /usr/bin/python3 with
tests/support/cloudinit_render_probe.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metadata_content.spec import read_spec
from tests.conftest import ROOT, run_cli
from tests.support.apiserver import ApiServer, api_server, cli
from tests.support.imagetools import bsdtar_extract, mcopy_extract

LOCK = ROOT / "tests" / "readers.txt"
PROBE = Path(__file__).with_name("readers_probe.py")
RENDER_PROBE = Path(__file__).with_name("cloudinit_render_probe.py")
DEBIAN_PYTHON = "/usr/bin/python3"
INSTALL_TIMEOUT = 600.0


class ReaderError(RuntimeError):
    """A reader raised, or its probe printed no JSON; the message carries its traceback."""


def readers_venv() -> Path:
    """The venv holding tests/readers.txt, created on first use; returns its python."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "configdrive-tests" / f"readers-{digest}"
    python = cache / "venv" / "bin" / "python"
    if python.exists():
        return python
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="readers-staging-", dir=cache.parent))
    try:
        # The base interpreter, not .venv's: a venv made from a venv would see ours.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(staging / "venv")], check=True, timeout=120,
                       capture_output=True)
        pip = subprocess.run(
            [str(staging / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", "--require-hashes", "--only-binary", ":all:", "-r", str(LOCK)],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
        if pip.returncode != 0:
            raise AssertionError(f"cannot install the readers from {LOCK.name} (exit {pip.returncode}):\n"
                                 f"{pip.stdout}\n{pip.stderr}")
        try:
            staging.rename(cache)  # `python -m` works from the new place; no entry-point scripts are used
        except OSError:
            if not python.exists():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return python


def _probe_env() -> dict[str, str]:
    # Proxy variables are dropped: requests and botocore would send 127.0.0.1 to a proxy.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("PYTHONPATH", None)
    return env


def _answer(cmd: Sequence[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=_probe_env(), timeout=timeout,
                          check=False, cwd="/")
    try:
        answer: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ReaderError(f"probe gave no JSON (exit {proc.returncode}): {' '.join(cmd)}\n"
                          f"stdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    if not answer.get("ok"):
        raise ReaderError(f"{answer.get('error')}\n{answer.get('traceback', '')}\nstderr: {proc.stderr}")
    result: dict[str, Any] = answer["result"]
    return result


def probe(*args: str, timeout: float = 120) -> dict[str, Any]:
    """Run readers_probe.py ARGS under the readers' venv (isolated: -I) and return its result."""
    return _answer([str(readers_venv()), "-I", str(PROBE), *args], timeout)


def glean_probe(*args: str, timeout: float = 120) -> dict[str, Any]:
    """readers_probe.py glean ARGS in a private mount namespace.

    glean checks absolute host paths (/etc/network/interfaces.d/*.cfg,
    /etc/systemd/network/*, /root/.ssh/authorized_keys) whatever its --root:
    an existing file there makes it skip an interface or copy the host's keys.
    The probe hides them behind empty tmpfs mounts that only it sees.
    """
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    return _answer([unshare, "--mount", "--propagation", "private", str(readers_venv()), "-I", str(PROBE),
                    "glean", "--parent-ns", os.readlink("/proc/self/ns/mnt"), *args], timeout)


def cloudinit_render(network_data: Path, target: Path, *macs: str, timeout: float = 120) -> dict[str, Any]:
    """Debian's cloud-init: convert_net_json(network_data.json), then every renderer into *target*.

    *macs* are "--mac=NAME=MAC" for the physical links (cloud-init would otherwise name them
    after this machine's interfaces). Returns {"files": {path under target: text}, ...}.
    """
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        raise AssertionError(f"{DEBIAN_PYTHON} not found: apt-get install cloud-init (scripts/debian-packages.txt)")
    return _answer([DEBIAN_PYTHON, "-I", str(RENDER_PROBE), str(network_data), str(target), *macs], timeout)


def build_drive(spec: Path, fmt: str, dest: Path) -> Path:
    """`configdrive build` (the real CLI) of *spec* as an "iso" or "vfat" drive, and the
    directory its files were extracted to by third-party tools (bsdtar, mtools):
    what a guest sees once it has mounted the drive, which we cannot do here."""
    image = dest / f"{spec.stem}.{'iso' if fmt == 'iso' else 'img'}"
    run_cli("build", "--instance", str(spec), *(["--format", "vfat"] if fmt == "vfat" else []),
            "-o", str(image), check=True)
    tree = dest / f"{spec.stem}-{fmt}"
    (bsdtar_extract if fmt == "iso" else mcopy_extract)(image, tree)
    return tree


def physical_nics(spec: Mapping[str, Any]) -> list[str]:
    """NAME=MAC of the spec's NICs: the interfaces a guest's kernel would show."""
    return [f"{nic['name']}={nic['mac']}" for nic in spec.get("nics", [])]


def loopback_spec(sample: Path, tmp: Path, **changes: Any) -> Path:
    """*sample* with its first NIC's first subnet moved to 127.0.0.1, so that the API in
    direct mode takes the test's own connections for this guest; *changes* replace
    top-level keys. Written as JSON into *tmp*."""
    data = read_spec(sample)
    subnet = data["nics"][0]["subnets"][0]
    subnet.update(cidr="127.0.0.0/8", ip="127.0.0.1", gateway="127.0.0.254")
    subnet.pop("dhcp", None)
    for route in subnet.get("routes", []):
        route["gateway"] = "127.0.0.253"
    data.update(changes)
    path = tmp / f"{sample.stem}-loopback.json"
    path.write_text(json.dumps(data))
    return path


@contextmanager
def direct_api(tmp: Path, spec: Path, env: Mapping[str, str] | None = None) -> Iterator[ApiServer]:
    """`configdrive serve api --mode direct` on 127.0.0.1 with *spec* registered in a
    data dir of its own; stopped on leaving, also on failure."""
    data = tmp / "data"
    cli("instances", "--data-dir", str(data), "add", str(spec))
    with api_server(tmp, "--data-dir", str(data), "--mode", "direct", env=dict(env or {})) as server:
        yield server
