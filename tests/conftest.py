"""Shared fixtures: where things are, and running the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SAMPLE_SPECS = sorted(SAMPLES.glob("*.yaml"))
CLI = [sys.executable, "-m", "configdrive"]


def run_cli(*args: str, check: bool = False, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run `configdrive ARGS` as a real process; output stays bytes."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*CLI, *args], capture_output=True, env=full_env, cwd=cwd or ROOT,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"configdrive {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


def locked_versions(lock: str = "requirements-test.txt") -> dict[str, str]:
    """``{normalised name: version}`` pinned in the lock file *lock*."""
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "==" in line:
            name, _, version = line.split(" ")[0].partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The versions this session really runs with, against the lock they came from."""
    from importlib.metadata import PackageNotFoundError, version

    shown = []
    for name, pinned in sorted(locked_versions().items()):
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "missing"
        shown.append(f"{name}=={found}" + ("" if found == pinned else f" (lock: {pinned})"))
    return [f"dependencies (requirements-test.txt): {' '.join(shown)}"]
