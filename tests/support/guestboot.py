"""Boot a real Linux guest under qemu (TCG) and read a config drive from inside it.

Host tools (blkid, isoinfo, mtools) parse images in user space; only a booted
kernel proves that Linux's own isofs/vfat drivers find and read the drive.
The guest is Debian's kernel plus a busybox-static initramfs built here. Its
/init is driven only by the kernel command line, so the same initramfs serves
qemu direct boots and libvirt domains (<kernel>/<initrd>/<cmdline>):

    cfgdrive.label=config-2   filesystem label to look for (findfs LABEL=...)
    cfgdrive.fs=iso9660|vfat  mount type (default: try iso9660, then vfat)
    cfgdrive.files=a,b,...    files to print, relative to the drive root; '*' = all
    cfgdrive.wait=30          seconds to wait for the label before giving up

Console protocol (one marker per line, file bytes as base64 so that the serial
line's CR/LF handling cannot alter them):

    @@FOUND dev@@  @@MOUNTED dev fstype@@  @@LIST@@ ... @@END@@
    @@FILE path@@ base64... @@END@@  @@SHA256 path hex@@  @@MISSING path@@
    @@NOCONFIGDRIVE label@@  @@DONE@@
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gzip
import hashlib
import lzma
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

Interface = Literal["cdrom", "sata-cdrom", "virtio", "ide", "sata"]

# Modules that let a guest see a cdrom or disk on IDE, AHCI (SATA), virtio-blk
# or virtio-scsi and mount iso9660/vfat. Dependencies come from modules.dep;
# the crypto "generic" modules are soft dependencies of crc-t10dif and
# crc64-rocksoft (sd_mod's deps) that the kernel would request via modprobe.
MODULES: tuple[str, ...] = (
    "crct10dif_generic", "crc64_rocksoft_generic",
    "sr_mod", "sd_mod", "ata_piix", "ahci",
    "virtio_pci", "virtio_blk", "virtio_scsi",
    "isofs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859-1",
)

MARK = re.compile(r"@@([A-Z0-9-]+)(?: (.*?))?@@")
_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "cpio": "cpio",
    "busybox": "busybox-static",
}

INIT = r"""#!/bin/busybox sh
# configdrive test guest: find the config drive, print files, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
set -f
label=config-2 fs="iso9660 vfat" files=openstack/latest/meta_data.json wait=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        cfgdrive.label=*) label="${arg#*=}" ;;
        cfgdrive.fs=*) fs="${arg#*=}" ;;
        cfgdrive.files=*) files="${arg#*=}" ;;
        cfgdrive.wait=*) wait="${arg#*=}" ;;
    esac
done
finish() { echo "@@DONE@@"; sync; poweroff -f; sleep 5; exit 1; }
echo "@@INIT $(uname -r)@@"
echo 1 >/proc/sys/kernel/printk  # no kernel lines inside our markers; failures print dmesg
while read -r m; do
    insmod "/lib/modules/$m" || echo "@@INSMOD-FAILED $m@@"
done </lib/modules/order
uptime_s() { cut -d. -f1 /proc/uptime; }
deadline=$(($(uptime_s) + wait)) dev=
until dev="$(findfs "LABEL=$label" 2>/dev/null)"; do
    [ "$(uptime_s)" -lt "$deadline" ] || break
    dev= ; usleep 200000
done
if [ -z "$dev" ]; then
    echo "@@NOCONFIGDRIVE $label@@"; ls /sys/class/block; dmesg | tail -n 30; finish
fi
echo "@@FOUND $dev@@"
for t in $fs; do mount -t "$t" -o ro "$dev" /mnt && break; done
mounted="$(awk '$2 == "/mnt" { print $1, $3 }' /proc/mounts)"
[ -n "$mounted" ] || { echo "@@MOUNTFAILED $dev@@"; dmesg | tail -n 30; finish; }
echo "@@MOUNTED $mounted@@"
echo "@@LIST@@"; (cd /mnt && find . | sort); echo "@@END@@"
[ "$files" = "*" ] && files="$(cd /mnt && find . -type f | sed 's,^\./,,' | sort | tr '\n' ,)"
IFS=,
for f in $files; do
    if [ -f "/mnt/$f" ]; then
        echo "@@FILE $f@@"; base64 "/mnt/$f"; echo "@@END@@"
        echo "@@SHA256 $f $(sha256sum <"/mnt/$f" | cut -d' ' -f1)@@"
    else
        echo "@@MISSING $f@@"
    fi
done
unset IFS
umount /mnt
finish
"""


class GuestBootError(RuntimeError):
    """The guest did not produce a complete, consistent report."""


class NoConfigDriveFound(GuestBootError):
    """The guest booted but found no filesystem labelled as asked."""


@dataclasses.dataclass
class BootResult:
    console: str
    device: str
    fstype: str
    listing: list[str]
    files: dict[str, bytes]
    sha256: dict[str, str]
    missing: list[str]
    seconds: float


def require(tool: str, package: str | None = None) -> str:
    """Path of a host tool, or an error naming the Debian package (tests must fail, not skip)."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        pkg = package or _TOOLS.get(tool, tool)
        raise GuestBootError(f"{tool} not found: install the Debian package {pkg!r}")
    return path


def kernel_path() -> Path:
    """The guest kernel: $CONFIGDRIVE_TEST_KERNEL or the newest /boot/vmlinuz-* with modules."""
    if env := os.environ.get("CONFIGDRIVE_TEST_KERNEL"):
        return Path(env)
    found = [p for p in Path("/boot").glob("vmlinuz-*")
             if (Path("/lib/modules") / p.name[len("vmlinuz-"):] / "modules.dep").is_file()]
    if not found:
        raise GuestBootError("no /boot/vmlinuz-* with /lib/modules: install the Debian package 'linux-image-amd64'")
    return max(found, key=lambda p: _version_key(p.name))


def _version_key(name: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", name)]


def kernel_version(kernel: Path | None = None) -> str:
    return (kernel or kernel_path()).name.removeprefix("vmlinuz-")


def boot_kernel(kernel: Path | None = None) -> Path:
    """The kernel to hand qemu/libvirt: the vmlinuz's ELF vmlinux when the kernel supports PVH.

    qemu boots an ELF vmlinux through its PVH entry point, which skips SeaBIOS's
    real-mode loader and the in-guest xz decompression: ~5 s less per boot
    under TCG. Same kernel code, so the drive is still read by Debian's drivers.
    """
    kernel = kernel or kernel_path()
    config = Path("/boot") / f"config-{kernel_version(kernel)}"
    if os.environ.get("CONFIGDRIVE_TEST_PVH") == "0" or not config.exists() \
            or "CONFIG_PVH=y" not in config.read_text().splitlines():
        return kernel
    data = kernel.read_bytes()
    out = cache_dir() / f"vmlinux-{kernel_version(kernel)}-{hashlib.sha256(data).hexdigest()[:16]}"
    if out.exists():
        return out
    for magic, make in ((b"\xfd7zXZ\x00", lzma.LZMADecompressor),
                        (b"\x1f\x8b\x08\x00", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS))):
        at = data.find(magic)
        try:
            elf = make().decompress(data[at:]) if at >= 0 else b""
        except (lzma.LZMAError, zlib.error):
            continue
        if elf.startswith(b"\x7fELF"):
            _atomic_write(out, elf)
            return out
    return kernel  # zstd/lz4 kernels: boot the bzImage, just slower


def _atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename so that parallel test runs never see a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # libvirt's qemu user must read it (issue 5)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def resolve_modules(kver: str, wanted: Iterable[str] = MODULES) -> list[Path]:
    """Module files in load order (dependencies first), skipping built-in ones."""
    moddir = Path("/lib/modules") / kver
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    builtin = (moddir / "modules.builtin").read_text() if (moddir / "modules.builtin").exists() else ""
    by_name = {_mod_name(m): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for dep in deps[mod]:
            visit(dep)
        order.append(mod)

    for name in wanted:
        if (mod := by_name.get(name.replace("-", "_"))) is not None:
            visit(mod)
        elif not re.search(rf"/{re.escape(name)}\.ko\b", builtin):
            raise GuestBootError(f"kernel module {name} neither in {moddir}/modules.dep nor built in")
    return [moddir / m for m in order]


def _mod_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    """Uncompressed module: busybox insmod cannot read compressed ones."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = require("zstd")
        return subprocess.run([zstd, "-dc", str(path)], check=True, capture_output=True).stdout
    return data


def cache_dir() -> Path:
    """Where built initramfs images are kept between runs ($CONFIGDRIVE_TEST_CACHE overrides)."""
    if env := os.environ.get("CONFIGDRIVE_TEST_CACHE"):
        return Path(env)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "configdrive-test"
    return Path("/var/tmp/configdrive-test")


def build_initramfs(kernel: Path | None = None, modules: Sequence[str] = MODULES) -> Path:
    """A gzip'd newc cpio (busybox, modules, /init), cached by the hash of everything in it."""
    kver = kernel_version(kernel)
    busybox = Path(require("busybox"))
    if not _is_static(busybox):
        raise GuestBootError(f"{busybox} is not static: install the Debian package 'busybox-static'")
    mods = [(p.name.split(".ko")[0] + ".ko", _module_bytes(p)) for p in resolve_modules(kver, modules)]
    digest = hashlib.sha256(INIT.encode())
    for part in [busybox.read_bytes(), *(name.encode() + data for name, data in mods)]:
        digest.update(hashlib.sha256(part).digest())
    out = cache_dir() / f"initramfs-{kver}-{digest.hexdigest()[:16]}.cpio.gz"
    if out.exists():
        return out
    cpio = require("cpio")
    with tempfile.TemporaryDirectory(prefix="initramfs-") as tmp:
        root = Path(tmp) / "root"
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "mnt", "tmp", "lib/modules"):
            (root / d).mkdir(parents=True)
        shutil.copy(busybox, root / "bin/busybox")
        for name, data in mods:
            (root / "lib/modules" / name).write_bytes(data)
        (root / "lib/modules/order").write_text("".join(name + "\n" for name, _ in mods))
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        archive = _cpio(cpio, root, names)
    _atomic_write(out, gzip.compress(archive, compresslevel=6, mtime=0))
    return out


def _cpio(cpio: str, root: Path, names: list[str]) -> bytes:
    proc = subprocess.run([cpio, "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                          input=("\n".join(names) + "\n").encode(), capture_output=True)
    if proc.returncode != 0:
        raise GuestBootError(f"cpio failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _is_static(path: Path) -> bool:
    """A dynamic busybox names its loader (PT_INTERP, ld-linux) in its first page."""
    with path.open("rb") as f:
        return b"ld-linux" not in f.read(4096)


def kernel_cmdline(*, files: Sequence[str] = ("openstack/latest/meta_data.json",),
                   fs: str | None = None, label: str = "config-2", wait: int = 30) -> str:
    """The guest command line; also what a libvirt domain's <cmdline> should hold."""
    for f in files:
        if not f or any(c in f for c in ", \t\n\"'") or f.startswith("/") or ".." in f.split("/"):
            raise ValueError(f"file path unusable on the kernel command line: {f!r}")
    args = ["console=ttyS0", "panic=-1", "loglevel=4", f"cfgdrive.label={label}",
            f"cfgdrive.files={','.join(files)}", f"cfgdrive.wait={wait}"]
    if fs:
        args.append(f"cfgdrive.fs={fs}")
    return " ".join(args)


def drive_args(image: Path, interface: Interface) -> list[str]:
    """qemu options attaching `image` the way a hypervisor would (disks via a throwaway overlay)."""
    path = str(image).replace(",", ",,")
    if interface == "cdrom":
        return ["-drive", f"file={path},format=raw,if=ide,media=cdrom"]
    if interface == "ide":
        return ["-drive", f"file={path},format=raw,if=ide,media=disk,snapshot=on"]
    if interface == "virtio":
        return ["-drive", f"file={path},format=raw,if=virtio,snapshot=on"]
    dev = {"sata": "ide-hd", "sata-cdrom": "ide-cd"}[interface]
    extra = ",snapshot=on" if dev == "ide-hd" else ",media=cdrom"
    return ["-device", "ahci,id=ahci", "-drive", f"file={path},format=raw,if=none,id=cfg{extra}",
            "-device", f"{dev},drive=cfg,bus=ahci.0"]


def boot_with_drive(image: str | os.PathLike[str], *, interface: Interface = "cdrom",
                    files: Sequence[str] = ("openstack/latest/meta_data.json",),
                    fs: str | None = None, label: str = "config-2", wait: int = 30,
                    timeout: float = 120) -> BootResult:
    """Boot a guest with `image` attached and return what its kernel read from the drive.

    Raises NoConfigDriveFound when no `label` filesystem appeared within `wait`
    seconds, GuestBootError on a timeout, a mount failure or a garbled report.
    """
    image = Path(image).resolve()
    if not image.is_file():
        raise FileNotFoundError(image)
    qemu = require("qemu-system-x86_64")
    kernel = kernel_path()
    initrd = build_initramfs(kernel)
    vmlinux = boot_kernel(kernel)
    with tempfile.TemporaryDirectory(prefix="guestboot-") as tmp:
        log = Path(tmp) / "console.log"
        cmd = [qemu, "-machine", "pc", "-accel", "tcg", "-nodefaults", "-no-user-config",
               "-display", "none", "-monitor", "none", "-m", "256", "-smp", "1", "-no-reboot",
               "-serial", f"file:{log}", "-kernel", str(vmlinux), "-initrd", str(initrd),
               "-append", kernel_cmdline(files=files, fs=fs, label=label, wait=wait),
               *drive_args(image, interface)]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuestBootError(f"guest did not power off within {timeout}s\n"
                                 f"{_tail(_read(log))}") from None
        seconds = time.monotonic() - start
        console = _read(log)
    if proc.returncode != 0:
        raise GuestBootError(f"qemu exited {proc.returncode}: {proc.stderr.decode(errors='replace')}\n"
                             f"command: {shlex.join(cmd)}\n{_tail(console)}")
    return parse_console(console, seconds=seconds)


def _read(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def _tail(console: str, lines: int = 40) -> str:
    return "console (last lines):\n" + "\n".join(console.splitlines()[-lines:])


def parse_console(console: str, *, seconds: float = 0.0) -> BootResult:
    """Decode the init's markers; also usable on a libvirt serial log (issue 5)."""
    res = BootResult(console, "", "", [], {}, {}, [], seconds)
    lines = [ln.strip() for ln in console.replace("\r", "").split("\n")]
    block: list[str] | None = None
    current: str | None = None
    done = False
    for line in lines:
        m = MARK.fullmatch(line) or (None if block is not None else MARK.search(line))
        if block is not None and not m:
            block.append(line)
            continue
        if not m:
            continue
        kind, arg = m.group(1), m.group(2) or ""
        if kind == "END" and block is not None:
            if current is None:
                res.listing = [ln for ln in block if ln]
            else:
                try:
                    res.files[current] = base64.b64decode("".join(block), validate=True)
                except binascii.Error as exc:
                    raise GuestBootError(f"garbled base64 for {current}: {exc}\n{_tail(console)}") from None
            block, current = None, None
        elif kind == "LIST":
            block, current = [], None
        elif kind == "FILE":
            block, current = [], arg
        elif kind == "SHA256":
            path, _, digest = arg.rpartition(" ")
            res.sha256[path] = digest
        elif kind == "MISSING":
            res.missing.append(arg)
        elif kind == "FOUND":
            res.device = arg
        elif kind == "MOUNTED":
            res.fstype = arg.rpartition(" ")[2]
        elif kind == "NOCONFIGDRIVE":
            raise NoConfigDriveFound(f"no config drive found: no filesystem labelled {arg!r}\n{_tail(console)}")
        elif kind == "MOUNTFAILED":
            raise GuestBootError(f"the guest kernel could not mount {arg}\n{_tail(console)}")
        elif kind == "DONE":
            done = True
    if not done or block is not None:
        raise GuestBootError(f"incomplete guest report (no @@DONE@@)\n{_tail(console)}")
    for path, data in res.files.items():
        if hashlib.sha256(data).hexdigest() != res.sha256.get(path):
            raise GuestBootError(f"{path}: bytes received over the console do not match the guest's sha256")
    return res
