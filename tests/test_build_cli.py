"""`configdrive build`: every sample in both formats, read back by independent tools and
by cloud-init; reproducible, atomic under signals, and clear about bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metadata_content import MetadataTree, load_instance
from tests.support.cloudinit_consumer import b64decode_field, read_config_drive_dir
from tests.support.imagetools import blkid, bsdtar_extract, mcopy_extract, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.yaml"))
RICH = ROOT / "samples" / "rich.yaml"
BAD_SPEC = ROOT / "tests" / "bad_specs" / "bad-uuid.yaml"
CLI = [sys.executable, "-m", "configdrive"]
EXT = {"iso9660": ".iso", "vfat": ".img"}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, **(env or {})})


def expected_files(spec: Path) -> dict[str, bytes]:
    return MetadataTree(load_instance(spec), delivery="drive").drive_files()


def comparable(files: dict[str, bytes]) -> dict[str, bytes]:
    """random_seed is fresh for every rendering unless the spec pins it: drop it."""
    out = {}
    for name, data in files.items():
        if name.endswith("/meta_data.json"):
            doc = json.loads(data)
            doc.pop("random_seed", None)
            data = json.dumps(doc).encode()
        out[name] = data
    return out


def test_samples_exist() -> None:
    assert {p.name for p in SAMPLES} >= {"minimal.yaml", "webserver.yaml", "rich.yaml", "windows.yaml"}


@pytest.fixture(scope="module", params=["iso9660", "vfat"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Every sample built by one batch CLI run; SOURCE_DATE_EPOCH pins the clock."""
    fmt = request.param
    out = tmp_path_factory.mktemp(fmt)
    proc = cli("build", "--format", fmt, "-o", str(out), "-i", str(ROOT / "samples"),
               env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert proc.returncode == 0, proc.stderr
    assert f"{len(SAMPLES)} of {len(SAMPLES)} images built" in proc.stdout
    return fmt, out


@pytest.mark.parametrize("spec", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_reads_back_exactly(built, spec: Path, tmp_path: Path) -> None:
    fmt, out = built
    image = out / (spec.stem + EXT[fmt])
    info = blkid(image)
    assert info["LABEL"] == "config-2" and info["TYPE"] == fmt
    expected = expected_files(spec)
    listing = run("7z", "l", str(image)).stdout
    assert all(name in listing for name in expected)
    if fmt == "iso9660":
        assert image.stat().st_size % 4096 == 0
        assert comparable(bsdtar_extract(image, tmp_path / "x")) == comparable(expected)
        for flag in ("-R", "-J"):
            names = run("isoinfo", flag, "-f", "-i", str(image)).stdout.split()
            assert {n.lstrip("/") for n in names} >= set(expected)
        xorriso = run("xorriso", "-indev", str(image), "-find", "/", "-type", "f").stdout
        assert all(f"'/{name}'" in xorriso for name in expected)
    else:
        assert image.stat().st_size == 64 * 1024 * 1024
        fsck = run("fsck.vfat", "-n", str(image), check=False)
        assert fsck.returncode == 0, fsck.stdout
        assert comparable(mcopy_extract(image, tmp_path / "x")) == comparable(expected)
    proc = cli("inspect", str(image))
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("spec", SAMPLES, ids=lambda p: p.stem)
def test_cloud_init_reads_the_extracted_drive(built, spec: Path, tmp_path: Path) -> None:
    fmt, out = built
    image = out / (spec.stem + EXT[fmt])
    tree = tmp_path / "tree"
    bsdtar_extract(image, tree) if fmt == "iso9660" else mcopy_extract(image, tree)
    instance = load_instance(spec)
    network = tree / "openstack" / "latest" / "network_data.json"
    links = json.loads(network.read_bytes()).get("links", []) if network.exists() else []
    macs = {link["ethernet_mac_address"]: f"eth{i}" for i, link in enumerate(links)
            if link.get("ethernet_mac_address")}
    result = read_config_drive_dir(tree, known_macs=macs)
    md = result["metadata"]
    assert md["uuid"] == md["instance-id"] == instance.uuid
    assert md["hostname"] == instance.fqdn
    if instance.user_data is not None:
        assert b64decode_field(result, "userdata") == instance.user_data
    for _i, injected in enumerate(instance.files):
        assert b64decode_field(result, "files", injected.path) == injected.content


@pytest.mark.parametrize("fmt", ["iso9660", "vfat"])
def test_same_epoch_same_bytes_in_any_time_zone(fmt: str, tmp_path: Path) -> None:
    images = []
    for tz in ("UTC", "Pacific/Chatham"):
        image = tmp_path / f"{tz.replace('/', '_')}{EXT[fmt]}"
        proc = cli("build", "-i", str(RICH), "-f", fmt, "-o", str(image),
                   env={"SOURCE_DATE_EPOCH": "1700000000", "TZ": tz})
        assert proc.returncode == 0, proc.stderr
        images.append(image.read_bytes())
    assert images[0] == images[1]


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    image = tmp_path / "x.iso"
    image.write_bytes(b"precious")
    proc = cli("build", "-i", str(RICH), "-o", str(image))
    assert proc.returncode == 2 and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert image.read_bytes() == b"precious"
    proc = cli("build", "-i", str(RICH), "-o", str(image), "--force")
    assert proc.returncode == 0, proc.stderr
    assert blkid(image)["LABEL"] == "config-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.iso"]


def test_default_output_name(tmp_path: Path) -> None:
    proc = cli("build", "-i", str(RICH), "-f", "vfat", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert blkid(tmp_path / "rich.img")["TYPE"] == "vfat"
    (tmp_path / "out").mkdir()
    proc = cli("build", "-i", str(RICH), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert blkid(tmp_path / "out" / "rich.iso")["TYPE"] == "iso9660"


def test_output_with_a_slash_is_a_directory(tmp_path: Path) -> None:
    """`-o new/` names a directory: refused when missing (not a file called "new")."""
    proc = cli("build", "-i", str(RICH), "-o", f"{tmp_path}/new/")
    assert proc.returncode == 2 and "no such directory" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "new").mkdir()
    proc = cli("build", "-i", str(RICH), "-o", f"{tmp_path}/new/")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["rich.iso"]


@pytest.mark.parametrize("args,status,needle", [
    (["-i", str(BAD_SPEC)], 2, "bad-uuid.yaml"),
    (["-i", "no-such-spec.yaml"], 2, "no-such-spec.yaml"),
    (["-i", str(RICH), "-o", "/proc/configdrive-test.iso"], 1, "/proc/configdrive-test.iso"),
    (["-i", str(RICH), "-o", "/no/such/dir/x.iso"], 2, "/no/such/dir"),
    (["-i", str(RICH), "-o", f"/{'a' * 300}/x.iso"], 1, "File name too long"),
    (["-i", str(RICH), "--size", "64M"], 2, "--size"),
    (["-i", str(RICH), "-f", "vfat", "--size", "lots"], 2, "size"),
    (["-i", str(RICH), "-f", "vfat", "--size", "100K"], 2, "size"),
    (["-i", str(RICH), "-f", "udf"], 2, "udf"),
])
def test_bad_input_is_a_clear_message(args: list[str], status: int, needle: str, tmp_path: Path) -> None:
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "out.img")]
    proc = cli("build", *args)
    assert proc.returncode == status, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("epoch", ["soon", "5869584000", "9" * 30])
def test_bad_source_date_epoch_is_a_clear_message(epoch: str, tmp_path: Path) -> None:
    proc = cli("build", "-i", str(RICH), "-o", str(tmp_path / "x.iso"),
               env={"SOURCE_DATE_EPOCH": epoch})
    assert proc.returncode == 2 and "SOURCE_DATE_EPOCH" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_batch_builds_every_good_spec_and_fails_overall(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    for spec in SAMPLES:
        (specs / spec.name).write_bytes(spec.read_bytes())
    shutil.copytree(ROOT / "samples" / "files", specs / "files")
    (specs / "broken.yaml").write_bytes(BAD_SPEC.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    proc = cli("build", "-i", str(specs), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(s.stem + ".iso" for s in SAMPLES)
    assert "broken.yaml" in proc.stderr and f"{len(SAMPLES)} of {len(SAMPLES) + 1} images built" in proc.stdout
    assert proc.stdout.count("ok ") == len(SAMPLES)
    # several specs given as arguments behave the same
    proc = cli("build", "-f", "vfat", "-o", str(out), "-i", *map(str, SAMPLES[:2]))
    assert proc.returncode == 0, proc.stderr
    assert {s.stem + ".img" for s in SAMPLES[:2]} <= {p.name for p in out.iterdir()}


SLOW_BUILD = textwrap.dedent("""
    import sys, time
    import configdrive.images.build as build
    import configdrive.images.atomic as atomic
    if sys.argv[1] == "named":
        atomic._open_unnamed = lambda directory: None
    real = build.write_image

    class Slow:
        def __init__(self, fh):
            self.fh, self.writes = fh, 0
        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                print("WRITING", flush=True)
                time.sleep(120)
            return self.fh.write(data)
        def __getattr__(self, name):
            return getattr(self.fh, name)

    build.write_image = lambda files, fh, fmt, **kw: real(files, Slow(fh), fmt, **kw)
    from configdrive.cli import cli
    cli(sys.argv[2:])
""")


@pytest.mark.parametrize("temp", ["unnamed", "named"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_build_killed_midway_leaves_nothing(tmp_path: Path, signum: int, temp: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, temp, "build", "-i", str(RICH),
                             "-f", "vfat", "--size", "1G", "-o", str(out / "x.img")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING", proc.stderr.read()
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    left = [p.name for p in out.iterdir()]
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        # an unnamed O_TMPFILE vanishes; a named temp file may stay, recognisable
        assert left == [] if temp == "unnamed" else all(n.endswith(".cfgdrv-tmp") for n in left)
    else:
        assert proc.returncode == (143 if signum == signal.SIGTERM else 130)
        assert left == []
        err = proc.stderr.read()
        assert "no partial image" in err and "Traceback" not in err, err


def test_help_everywhere() -> None:
    for args in (["build", "--help"], ["inspect", "--help"], ["--help"]):
        proc = cli(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout
    assert "Exit status" in cli("build", "--help").stdout


@pytest.mark.parametrize("args,needed,forbidden", [
    # a valid spec never needs jsonschema (metadata_content/spec/schema_quick.py)
    # ... nor pycdlib for a plain tree (configdrive/images/iso9660.py writes it)
    # ... nor modules only a slower way needs (dataclasses, ctypes, pkgutil)
    (["build", "-f", "iso9660"], "configdrive.images.iso9660",
     ("pyfatfs", "jsonschema", "pycdlib", "dataclasses", "ctypes", "pkgutil")),
    (["build", "-f", "vfat"], "pyfatfs", ("pycdlib", "jsonschema")),
    (["inspect"], "pyfatfs", ()),
])
def test_commands_import_only_what_they_use(args: list[str], needed: str, forbidden: tuple,
                                            tmp_path: Path) -> None:
    image = tmp_path / "x.img"
    with open(image, "wb") as fh:
        from configdrive.images.vfat import write_vfat
        write_vfat(expected_files(RICH), fh, epoch=0)
    argv = [*args, str(image)] if args == ["inspect"] else \
        [*args, "-i", str(RICH), "-o", str(tmp_path / "out.img")]
    code = textwrap.dedent(f"""
        import sys
        from configdrive.cli import cli
        try:
            cli({argv!r})
        except SystemExit as exit:
            assert not exit.code, exit.code
        print(" ".join(sorted(sys.modules)))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    modules = set(proc.stdout.splitlines()[-1].split())
    assert needed in modules
    for heavy in (*forbidden, "fs", "pkg_resources", "flask", "libvirt", "sqlalchemy"):
        assert heavy not in modules, f"configdrive {' '.join(args)} imported {heavy}"


@pytest.mark.parametrize("temp", ["unnamed", "named"])
def test_atomic_output_on_error_and_race(tmp_path: Path, temp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from configdrive.images import atomic
    if temp == "named":
        monkeypatch.setattr(atomic, "_open_unnamed", lambda directory: None)
    dest = tmp_path / "x.img"
    with pytest.raises(RuntimeError), atomic.atomic_output(dest) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # appeared while we were writing: never clobbered
    with pytest.raises(FileExistsError), atomic.atomic_output(dest) as fh:
        fh.write(b"ours")
        dest.write_bytes(b"theirs")
    assert dest.read_bytes() == b"theirs" and list(tmp_path.iterdir()) == [dest]
    with atomic.atomic_output(dest, force=True) as fh:
        fh.write(b"ours")
    assert dest.read_bytes() == b"ours" and list(tmp_path.iterdir()) == [dest]
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_proc_link_gives_an_unnamed_file_its_name(tmp_path: Path) -> None:
    """Naming an O_TMPFILE through /proc works here, and the probe says so.

    It failed with EXDEV (and the probe fell back to a named temporary file
    silently) while os.link called link() instead of linkat(AT_SYMLINK_FOLLOW).
    """
    from configdrive.images import atomic
    fd = os.open(tmp_path, os.O_TMPFILE | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"image")
        atomic._link_via_proc(fd, tmp_path / "named")
    finally:
        os.close(fd)
    assert (tmp_path / "named").read_bytes() == b"image"
    assert atomic._probe(tmp_path) is True
    assert [p.name for p in tmp_path.iterdir()] == ["named"]


def test_errors_carry_their_exit_status_and_bugs_stay_bugs():
    """One hierarchy: a user's mistake exits 2, a failure 1, each in its own words;
    anything outside it (a bug) is re-raised, never printed as a one-line mistake."""
    from configdrive.commands.images import _classify
    from configdrive.images.iso import IsoError
    from configdrive.images.vfat import VfatError
    from hypervisor import ConnectError, DomainNotFound, PlacementError
    from metadata_content.errors import BadInput, SpecError

    assert _classify(BadInput("--size: too small")) == (2, "--size: too small")
    assert _classify(SpecError("a.yaml", [])) == (2, "")
    assert _classify(IsoError("no free ISO 9660 name")) == (1, "no free ISO 9660 name")
    assert _classify(VfatError("too many entries")) == (1, "too many entries")
    assert [e("x").exit_code for e in (ConnectError, DomainNotFound, PlacementError)] == [1, 2, 2]
    for bug in (ValueError("bug"), KeyError("bug"), TypeError("bug")):
        with pytest.raises(type(bug)):
            _classify(bug)


@pytest.mark.parametrize("given,kind", [("iso", "iso9660"), ("ISO", "iso9660"), ("iso-9660", "iso9660"),
                                        ("fat", "vfat"), ("iso9660", "iso9660"), ("vfat", "vfat")])
def test_format_takes_the_obvious_names(tmp_path, given, kind):
    out = tmp_path / "drive"
    proc = cli("build", "--instance", "samples/minimal.yaml", "--format", given, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert blkid(out)["TYPE"] == kind and blkid(out)["LABEL"] == "config-2"
    bad = cli("build", "--instance", "samples/minimal.yaml", "--format", "ufs", "-o", str(tmp_path / "x"))
    assert bad.returncode == 2 and "'ufs' is not one of 'iso9660', 'vfat'" in bad.stderr
