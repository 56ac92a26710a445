"""A corpus of broken specs: each names the exact field and reason, exits 2,
and never shows a traceback. Expectations sit in each file's first line:
``# expect: <json path> | <fragment of the reason>``."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from metadata_content import SpecError, load_instance
from tests.conftest import ROOT, locked_versions, run_cli

BAD = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))


def expectation(spec: Path) -> tuple[str, str]:
    first = spec.read_text().splitlines()[0]
    assert first.startswith("# expect: "), spec
    path, fragment = first.removeprefix("# expect: ").split(" | ")
    return path, fragment


def test_corpus_is_large_enough():
    assert len(BAD) >= 35


@pytest.mark.parametrize("spec", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_names_field_and_reason(spec):
    path, fragment = expectation(spec)
    with pytest.raises(SpecError) as err:
        load_instance(spec)
    lines = str(err.value).splitlines()
    wanted = f"{spec}: {path}: "
    assert any(line.startswith(wanted) and fragment in line for line in lines), lines


@pytest.mark.parametrize("spec", BAD[::4], ids=[p.stem for p in BAD[::4]])
def test_bad_spec_cli_exit_2_without_traceback(spec):
    path, fragment = expectation(spec)
    proc = run_cli("validate", str(spec))
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert f"{path}: " in err and fragment in err
    assert proc.stdout == b""


def test_validate_reports_every_file(tmp_path):
    good = Path(__file__).parent.parent / "samples" / "minimal.yaml"
    proc = run_cli("validate", str(good), str(BAD[0]), str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2
    assert b"minimal.yaml: ok" in proc.stdout
    assert b"missing.yaml: <top>: no such file" in proc.stderr
    assert b"2 of 3 spec(s) invalid" in proc.stderr


def test_several_problems_reported_at_once(tmp_path):
    spec = tmp_path / "two.yaml"
    spec.write_text("uuid: nope\nhostname: -x-\n")
    with pytest.raises(SpecError) as err:
        load_instance(spec)
    assert [p.path for p in err.value.problems] == ["uuid", "hostname"]


def test_json_spec_errors_too(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text('{"uuid": "dc7c8e7d-a420-45fd-bc9f-ae0a16177f73", "hostname": "a", "nics": [{"mac": 3}]}')
    proc = run_cli("render", "--instance", str(spec), "/")
    assert proc.returncode == 0  # "/" needs no instance, as in Nova
    proc = run_cli("render", "--instance", str(spec), "/latest/meta-data/hostname")
    assert proc.returncode == 2 and b"nics[0].mac: must be a string" in proc.stderr


_MESSAGES = """
import json, sys, yaml
from pathlib import Path
from metadata_content import SpecError, load_instance
out = {"pyyaml": yaml.__version__}
for spec in sys.argv[1:]:
    try:
        load_instance(spec)
        out[spec] = None
    except SpecError as exc:
        out[spec] = str(exc)
print(json.dumps(out))
"""


def _messages(specs: list[Path], pythonpath: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    proc = subprocess.run([sys.executable, "-c", _MESSAGES, *map(str, specs)], capture_output=True,
                          env=env, timeout=120, check=True)
    return json.loads(proc.stdout)


def test_messages_do_not_depend_on_pyyaml_s_release(tmp_path):
    """A new PyYAML release changed its wording and turned the suite red once:
    every bad spec (and a few more YAML mistakes) must read the same under the
    oldest PyYAML we admit, installed from its own hashed lock, as under ours."""
    lock = ROOT / "tests" / "pyyaml-oldest.txt"  # scripts/lock.sh: pyproject.toml's lower bound
    cache = Path.home() / ".cache" / "configdrive-tests" / hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    if not (cache / "yaml").is_dir():
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache.parent))  # renamed into place once complete
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                        "--target", str(staging), "-r", str(lock)], check=True, timeout=300)
        shutil.rmtree(cache, ignore_errors=True)
        staging.rename(cache)
    extra = {"syntax": "a: [b\n", "tab": "a:\n\tb: 1\n", "alias": "a: *x\n", "two-documents": "a: 1\n---\nb: 2\n",
             "deep-flow": "a: " + "[" * 2000 + "]" * 2000 + "\n", "deep-block": "a:\n" + "".join(
                 "  " * i + "b:\n" for i in range(1, 1100)), "control": "a: \x01\n"}
    for name, text in extra.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    specs = BAD + sorted(tmp_path.glob("*.yaml"))
    ours, oldest = _messages(specs), _messages(specs, str(cache))
    assert ours.pop("pyyaml") != oldest.pop("pyyaml") == locked_versions("tests/pyyaml-oldest.txt")["pyyaml"]
    assert all(ours.values()) and ours == oldest
