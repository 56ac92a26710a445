"""`configdrive attach/detach/sync` against a real libvirtd, and a real boot.

The module starts ``virtlogd -d`` and ``libvirtd -d`` when they are not
already running (no systemd on CI machines) and stops exactly the daemons it
started, by pid file. Domains are TCG (``type='qemu'``; KVM guests hang on
these machines), q35, direct kernel boot of Debian's kernel with the busybox
initramfs of :mod:`guestboot`, whose /init finds ``config-2``, prints
meta_data.json to the serial console (a file) and powers off. Three boots
(~6-15 s each): ISO as a SATA cdrom, the same domain after the instance
changed, and VFAT as a virtio-scsi disk.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt  # libvirt-python, in the test extra: a missing module fails, never skips
import pytest
import yaml

from hypervisor import devices
from tests.conftest import ROOT, run_cli
from tests.support import guestboot

URI = "qemu:///system"
SOCKET = Path("/run/libvirt/libvirt-sock")
DAEMONS = (("virtlogd", Path("/run/virtlogd.pid")), ("libvirtd", Path("/run/libvirtd.pid")))
BOOT_TIMEOUT = 120
pytestmark = pytest.mark.boot


def _alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _can_connect() -> bool:
    try:
        libvirt.open(URI).close()
        return True
    except libvirt.libvirtError:
        return False


@pytest.fixture(scope="module")
def daemons() -> Iterator[None]:
    """virtlogd + libvirtd, started here only if not running; stopped only if started here."""
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    started: list[tuple[str, int]] = []
    autostarted: list[str] = []
    try:  # a daemon started here is stopped even when a later start-up step fails
        for name, pidfile in DAEMONS:
            if _alive(pidfile) is not None or (name == "libvirtd" and _can_connect()):
                continue
            binary = guestboot.require(name, "libvirt-daemon-system")
            subprocess.run([binary, "-d", "-p", str(pidfile)], check=True, timeout=30)
            _wait(lambda pidfile=pidfile: _alive(pidfile) is not None, 15, f"{name} pid file {pidfile}")
            started.append((name, _alive(pidfile)))  # type: ignore[arg-type]
        _wait(_can_connect, 30, f"libvirtd to accept connections on {URI}")
        if any(name == "libvirtd" for name, _ in started):
            conn = libvirt.open(URI)
            autostarted = [n.name() for n in conn.listAllNetworks() if n.isActive()]
            conn.close()
        yield
    finally:
        if autostarted:  # networks our libvirtd started (dnsmasq) go with it
            conn = libvirt.open(URI)
            for net in autostarted:
                conn.networkLookupByName(net).destroy()
            conn.close()
        for name, pid in reversed(started):
            os.kill(pid, signal.SIGTERM)
            _wait(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 20, f"{name} (pid {pid}) to stop")


@pytest.fixture(scope="module")
def conn(daemons: None) -> Iterator[libvirt.virConnect]:
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Under /var/tmp and mode 0755: libvirt's qemu user must reach logs and images."""
    path = Path(tempfile.mkdtemp(prefix="cfgdrive-libvirt-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def domains(conn: libvirt.virConnect) -> Iterator[list[str]]:
    """Uuids of domains a test defines; destroyed and undefined afterwards."""
    made: list[str] = []
    yield made
    for uuid in made:
        try:
            dom = conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def _spec(workdir: Path, hostname: str, uuid: str, **extra: Any) -> Path:
    data = yaml.safe_load((ROOT / "samples" / "minimal.yaml").read_text())
    data.update(uuid=uuid, hostname=hostname, **extra)
    path = workdir / f"{hostname}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _define(conn: libvirt.virConnect, made: list[str], name: str, uuid: str,
            console: Path | None = None, disks: str = "") -> libvirt.virDomain:
    kernel = guestboot.kernel_path()
    os_boot = ""
    if console is not None:
        os_boot = (f"<kernel>{guestboot.boot_kernel(kernel)}</kernel>"
                   f"<initrd>{guestboot.build_initramfs(kernel)}</initrd>"
                   f"<cmdline>{guestboot.kernel_cmdline(wait=20)}</cmdline>")
    serial = (f"<serial type='file'><source path='{console}'/><target port='0'/></serial>"
              if console is not None else "")
    xml = f"""<domain type='qemu'>
  <name>{name}</name><uuid>{uuid}</uuid>
  <memory unit='MiB'>256</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>{os_boot}</os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{guestboot.require('qemu-system-x86_64')}</emulator>
    {disks}{serial}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>"""
    made.append(uuid)
    return conn.defineXML(xml)


def _our_disk(dom: libvirt.virDomain, flags: int = libvirt.VIR_DOMAIN_XML_INACTIVE) -> list[ET.Element]:
    root = ET.fromstring(dom.XMLDesc(flags))
    return [d for d in root.iterfind("devices/disk")
            if d.find("alias") is not None and d.find("alias").get("name") == devices.ALIAS]


def _boot(dom: libvirt.virDomain, console: Path) -> guestboot.BootResult:
    console.unlink(missing_ok=True)
    start = time.monotonic()
    dom.create()
    try:
        _wait(lambda: not dom.isActive(), BOOT_TIMEOUT, f"domain {dom.name()} to power off")
    except AssertionError as err:
        log = console.read_text(errors="replace") if console.exists() else ""
        raise AssertionError(f"{err}\nconsole:\n{log[-3000:]}") from None
    return guestboot.parse_console(console.read_text(errors="replace"),
                                   seconds=time.monotonic() - start)


def _attach(name: str, spec: Path, fmt: str, images: Path) -> str:
    proc = run_cli("attach", "--domain", name, "--instance", str(spec), "--format", fmt,
                   "--connect", URI, "--images-dir", str(images), check=True)
    return proc.stdout.decode()


def test_boot_iso_then_changed_instance_then_vfat(conn: Any, domains: list[str], workdir: Path) -> None:
    uuid = str(uuidlib.uuid4())
    name = f"cfgdrive-boot-{uuid[:8]}"
    console, images = workdir / "console.log", workdir / "images"
    dom = _define(conn, domains, name, uuid, console)
    timings = []

    # 1. ISO: a read-only SATA cdrom on q35, read by the guest kernel
    spec = _spec(workdir, "first-boot", uuid)
    out = _attach(name, spec, "iso9660", images)
    assert "attached" in out
    [disk] = _our_disk(dom)
    assert (disk.get("device"), disk.find("target").get("bus")) == ("cdrom", "sata")
    result = _boot(dom, console)
    timings.append(result.seconds)
    meta = json.loads(result.files["openstack/latest/meta_data.json"])
    assert (meta["uuid"], meta["hostname"]) == (uuid, "first-boot.novalocal")
    assert result.fstype == "iso9660"

    # 2. the instance changes: attach again, boot again, the guest sees the new content
    spec = _spec(workdir, "second-boot", uuid)
    out = _attach(name, spec, "iso9660", images)
    assert "refreshed" in out
    assert len(_our_disk(dom)) == 1 and len(list(images.iterdir())) == 1
    result = _boot(dom, console)
    timings.append(result.seconds)
    meta = json.loads(result.files["openstack/latest/meta_data.json"])
    assert meta["hostname"] == "second-boot.novalocal"

    # 3. VFAT: the same domain, now a read-only disk on virtio-scsi
    spec = _spec(workdir, "vfat-boot", uuid)
    _attach(name, spec, "vfat", images)
    [disk] = _our_disk(dom)
    assert (disk.get("device"), disk.find("target").get("bus")) == ("disk", "scsi")
    assert disk.find("readonly") is not None
    result = _boot(dom, console)
    timings.append(result.seconds)
    meta = json.loads(result.files["openstack/latest/meta_data.json"])
    assert meta["hostname"] == "vfat-boot.novalocal" and result.fstype == "vfat"

    # detach: the definition and the images directory are clean again
    proc = run_cli("detach", "--domain", uuid, "--connect", URI, "--images-dir", str(images), check=True)
    assert b"detached" in proc.stdout
    assert not _our_disk(dom) and list(images.iterdir()) == []
    print(f"boot seconds: {', '.join(f'{t:.1f}' for t in timings)}")


def test_live_media_change_on_running_domain(conn: Any, domains: list[str], workdir: Path) -> None:
    """A paused running domain: re-attach swaps the cdrom media live, detach ejects it."""
    uuid = str(uuidlib.uuid4())
    name = f"cfgdrive-live-{uuid[:8]}"
    images = workdir / "images"
    dom = _define(conn, domains, name, uuid)
    _attach(name, _spec(workdir, "live-one", uuid), "iso9660", images)
    dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    first = _our_disk(dom, 0)[0].find("source").get("file")
    out = _attach(name, _spec(workdir, "live-two", uuid), "iso9660", images)
    assert "media changed in the running guest" in out
    [live] = _our_disk(dom, 0)
    [persistent] = _our_disk(dom)
    assert live.find("source").get("file") == persistent.find("source").get("file") != first
    assert not Path(first).exists() and len(list(images.iterdir())) == 1
    proc = run_cli("detach", "--domain", name, "--connect", URI, "--images-dir", str(images), check=True)
    # libvirt refuses to detach a SATA cdrom live, so _live_detach always falls back to ejecting
    assert b"media ejected in the running guest" in proc.stdout, proc.stdout
    assert not _our_disk(dom) and list(images.iterdir()) == []
    [live] = _our_disk(dom, 0)  # the tray stays, empty, until the guest stops
    assert live.find("source") is None or live.find("source").get("file") is None
    # a disk cannot replace the cdrom live on SATA: the definition changes, the guest at next boot
    out = _attach(name, _spec(workdir, "live-three", uuid), "vfat", images)
    assert "the new drive is there from the next boot" in out
    [disk] = _our_disk(dom)
    assert (disk.get("device"), disk.find("target").get("bus")) == ("disk", "scsi")


def test_detach_finds_the_image_through_the_data_dir(conn: Any, domains: list[str], workdir: Path) -> None:
    """attach --data-dir D keeps the image in D/images; detach --data-dir D (or
    CONFIGDRIVE_DATA) removes it there, not in the system-wide default folder."""
    data = workdir / "data"
    for how in ("option", "env"):
        uuid = str(uuidlib.uuid4())
        dom = _define(conn, domains, f"cfgdrive-datadir-{uuid[:8]}", uuid)
        run_cli("attach", "--domain", uuid, "--instance", str(_spec(workdir, f"dd-{how}", uuid)),
                "--connect", URI, "--data-dir", str(data), check=True)
        assert len(_our_disk(dom)) == 1 and len(list((data / "images").iterdir())) == 1
        args = ["--data-dir", str(data)] if how == "option" else []
        proc = run_cli("detach", "--domain", uuid, "--connect", URI, *args,
                       env={"CONFIGDRIVE_DATA": str(data)} if how == "env" else None, check=True)
        assert b"detached" in proc.stdout
        assert not _our_disk(dom) and list((data / "images").iterdir()) == []


def test_sync_cli_three_policies(conn: Any, domains: list[str], workdir: Path) -> None:
    data, images = workdir / "data", workdir / "images"
    made = {}
    for kind, extra in (("asks", {"config_drive": True}),
                        ("image", {"image": {"properties": {"img_config_drive": "mandatory"}}}),
                        ("plain", {}), ("stranger", None)):
        uuid = str(uuidlib.uuid4())
        made[kind] = _define(conn, domains, f"cfgdrive-sync-{kind}-{uuid[:8]}", uuid)
        if extra is not None:
            run_cli("instances", "--data-dir", str(data), "add",
                    str(_spec(workdir, f"sync-{kind}", uuid, **extra)), check=True)
    before = {k: d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) for k, d in made.items()}
    proc = run_cli("sync", "--connect", URI, "--data-dir", str(data), "--images-dir", str(images))
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode() + out
    assert [bool(_our_disk(made[k])) for k in ("asks", "image", "plain", "stranger")] == [True, True, False, False]
    for kind in ("plain", "stranger"):
        assert made[kind].XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before[kind]
    assert f"ignored  {made['stranger'].name()}" in out and f"http     {made['plain'].name()}" in out
    assert len(list(images.iterdir())) == 2
    # force_config_drive: the plain domain (never started) now gets one too
    proc = run_cli("sync", "--connect", URI, "--data-dir", str(data), "--images-dir", str(images),
                   "--force-config-drive", check=True)
    assert bool(_our_disk(made["plain"])) and not _our_disk(made["stranger"])
    assert made["stranger"].XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before["stranger"]


# -- errors: a clear message, an exit status, nothing changed --------------------


def test_no_daemon(workdir: Path) -> None:
    images = workdir / "images"
    for args in (["attach", "--domain", "x", "--instance", str(ROOT / "samples/minimal.yaml")],
                 ["detach", "--domain", "x"], ["sync", "--data-dir", str(workdir / "data")]):
        proc = run_cli(*args, "--connect", "qemu+unix:///system?socket=/nonexistent",
                       "--images-dir", str(images))
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert "no daemon is listening" in err and "libvirtd" in err and "Traceback" not in err
        assert not images.exists()


def test_default_uri_from_environment(workdir: Path) -> None:
    proc = run_cli("detach", "--domain", "x", "--images-dir", str(workdir / "i"),
                   env={"LIBVIRT_DEFAULT_URI": "qemu+unix:///system?socket=/nonexistent/sock"})
    assert proc.returncode == 1 and b"/nonexistent/sock" in proc.stderr


def test_unknown_domain(conn: Any, workdir: Path) -> None:
    images = workdir / "images"
    for ref in ("no-such-domain", str(uuidlib.uuid4())):
        proc = run_cli("attach", "--domain", ref, "--instance", str(ROOT / "samples/minimal.yaml"),
                       "--connect", URI, "--images-dir", str(images))
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert f"no domain named '{ref}'" in err and "nothing was changed" in err
        assert not images.exists()


def test_target_in_use_and_bad_spec(conn: Any, domains: list[str], workdir: Path) -> None:
    uuid = str(uuidlib.uuid4())
    name = f"cfgdrive-busy-{uuid[:8]}"
    disk = ("<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
            "<target dev='sdb' bus='sata'/><readonly/></disk>")
    dom = _define(conn, domains, name, uuid, disks=disk)
    images = workdir / "images"
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    spec = _spec(workdir, "busy", uuid)
    proc = run_cli("attach", "--domain", name, "--instance", str(spec), "--target", "sdb",
                   "--connect", URI, "--images-dir", str(images))
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "target sdb is already in use" in err
    bad = workdir / "bad.yaml"
    bad.write_text("uuid: not-a-uuid\nhostname: x\n")
    proc = run_cli("attach", "--domain", name, "--instance", str(bad), "--connect", URI,
                   "--images-dir", str(images))
    assert proc.returncode == 2 and b"uuid" in proc.stderr
    proc = run_cli("attach", "--domain", name, "--instance", str(uuidlib.uuid4()), "--connect", URI,
                   "--images-dir", str(images), "--data-dir", str(workdir / "data"))
    assert proc.returncode == 2 and b"no instance with that ID" in proc.stderr
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert not images.exists() or list(images.iterdir()) == []
