"""The README's set-up, as a new user runs it: packages come from the lock
files with their hashes, and `configdrive attach` works after it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from hypervisor import NEEDS_LIBVIRT_PYTHON
from tests.conftest import ROOT, locked_versions


def test_this_session_runs_with_the_locked_versions():
    pins = locked_versions()
    assert {"pyyaml", "jsonschema", "pycdlib", "pyfatfs", "flask", "libvirt-python", "ruff", "mypy"} <= set(pins)
    assert {name: version(name) for name in pins} == pins


def test_every_lock_file_names_the_same_releases_and_hashes_them():
    test = locked_versions()
    for lock in ("requirements.txt", "requirements-libvirt.txt", "requirements-build.txt"):
        pins = locked_versions(lock)
        assert pins and all(test[name] == pinned for name, pinned in pins.items()), lock
    assert "libvirt-python" in locked_versions("requirements-libvirt.txt")
    assert "libvirt-python" not in locked_versions("requirements.txt")
    for lock in [*ROOT.glob("requirements*.txt"), ROOT / "tests" / "pyyaml-oldest.txt"]:
        entries = re.split(r"\n(?=\S)", lock.read_text())  # a pin, then its indented hashes and notes
        pins = [entry for entry in entries if "==" in entry.split("\n")[0]]
        assert pins and all("--hash=sha256:" in entry for entry in pins), lock


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The tracked files of this checkout, as a fresh clone would have them."""
    dest = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / os.fsdecode(name))
    return dest


def _setup(checkout: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.rmtree(checkout / ".venv", ignore_errors=True)
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=checkout, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600, check=True)


def test_setup_with_libvirt_dev_gives_a_working_attach(checkout):
    """libvirt-dev is installed here (scripts/debian-packages.txt): the README's first
    command adds the libvirt extra, and attach drives libvirt's own test driver."""
    done = _setup(checkout)
    assert "requirements-libvirt.txt" in done.stdout
    cli = checkout / ".venv" / "bin" / "configdrive"
    proc = subprocess.run([cli, "attach", "--connect", "test:///default", "--domain", "test",
                           "--instance", "samples/minimal.yaml", "--images-dir", str(checkout / "images")],
                          cwd=checkout, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "test" in proc.stdout and list((checkout / "images").iterdir())


def test_setup_without_libvirt_dev_says_what_to_do(checkout):
    """Without libvirt's development files the runtime lock is installed, and attach
    says the same as its --help and the README."""
    done = _setup(checkout, PKG_CONFIG_LIBDIR="/nonexistent")
    assert "from requirements.txt" in done.stdout
    cli = checkout / ".venv" / "bin" / "configdrive"
    proc = subprocess.run([cli, "attach", "--connect", "test:///default", "--domain", "test",
                           "--instance", "samples/minimal.yaml"], cwd=checkout, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: libvirt-python is not installed; this command {NEEDS_LIBVIRT_PYTHON}"
    helptext = subprocess.run([cli, "attach", "--help"], capture_output=True, text=True, check=True).stdout
    assert " ".join(NEEDS_LIBVIRT_PYTHON.split()) in " ".join(helptext.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert NEEDS_LIBVIRT_PYTHON.split(": ", 1)[1].split(" (in a checkout")[0] in readme


def test_every_environment_variable_read_is_documented():
    """No hidden knobs: each CONFIGDRIVE_* name in the code is in the README's table."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("#### Environment"):readme.index("#### Who is asking")]
    names = set()
    for package in ("metadata_content", "configdrive", "hypervisor"):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"CONFIGDRIVE_[A-Z0-9_]*[A-Z0-9]", source.read_text()))
    # CONFIGDRIVE_<SECTION>_<KEY> names are documented by the configuration file's keys
    generic = "`CONFIGDRIVE_<SECTION>_<KEY>`" in table
    config_keys = {n for n in names if generic and n.split("_")[1] in {"STORE", "API", "AGENT", "VENDORDATA"}}
    undocumented = {n for n in names - config_keys if f"`{n}`" not in table}
    assert not undocumented and "GRANIAN" not in " ".join(names)
