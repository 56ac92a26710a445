"""A throwaway PostgreSQL cluster for tests: initdb in a temporary directory,
listening on 127.0.0.1 only, stopped (by pg_ctl, for its own pid) afterwards.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
Debian ``postgres`` user (via runuser). Missing binaries fail the test with
the package to install; nothing is skipped.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.apiserver import free_port

HINT = "install Debian's postgresql package (scripts/debian-packages.txt)"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(f"PostgreSQL's initdb not found under /usr/lib/postgresql; {HINT}")
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh, empty database."""
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="configdrive-pg-"))
    data = base / "data"
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        if shutil.which("runuser") is None:
            raise RuntimeError("runuser (util-linux) is needed to run PostgreSQL as root's tests")
        os.chmod(base, 0o755)
        shutil.chown(base, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    log = base / "server.log"

    def run(*args: str) -> None:
        proc = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "configdrive", "--no-sync",
        "-E", "UTF8", "--locale", "C")
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
    try:
        yield f"postgresql://configdrive@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(Exception):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
