"""Benchmark config-drive builds against Nova's recipes (not a test).

    .venv/bin/python bench/build.py [--runs 41] [--batch 500] [--spec samples/rich.yaml]

Prints medians side by side with ratios and the targets from issue 3:
in-process ISO <= 0.5x genisoimage (whole process), in-process VFAT <= 1x
truncate + mkfs.vfat + mcopy, whole CLI <= 8x `python -c pass`; plus a batch of
N instances (images/s). "In-process" is the full drive: spec -> render ->
image file (atomic), as `configdrive build` does it, without interpreter start;
nothing is cached between images (each run reads, validates and renders the
spec and lays out a new image). The ISO rows also show pycdlib's writer, which
handles the trees the direct one does not (long or non-ASCII names, deep
directories). The CLI rows run the installed `configdrive` command, as users
do (`python -m configdrive` would add runpy's import). Project modules are
byte-compiled first (as an installed package would be), since this
environment sets PYTHONDONTWRITEBYTECODE.
"""
from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
_SCRIPT = Path(PY).parent / "configdrive"  # the installed console script, beside this python
CLI = (str(_SCRIPT),) if _SCRIPT.is_file() else (PY, "-m", "configdrive")
EPOCH_ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}


def paired_ms(ours: Callable[[], object], ref: Callable[[], object], runs: int) -> tuple[float, float]:
    """Medians of ours and ref run alternately, so background load hits both alike."""
    for fn in (ours, ref, ours, ref):
        fn()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, bucket in ((ref, times[1]), (ours, times[0])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def sh(*argv: str, env: dict | None = None) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def write_tree(files: dict[str, bytes], root: Path) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def batch_specs(spec: Path, count: int, where: Path) -> Path:
    """count copies of spec with distinct uuid and hostname (files/ shared)."""
    import uuid

    import yaml
    specs = where / "specs"
    specs.mkdir()
    if (spec.parent / "files").is_dir():
        shutil.copytree(spec.parent / "files", specs / "files")
    doc = yaml.safe_load(spec.read_text())
    for i in range(count):
        doc["uuid"] = str(uuid.UUID(int=i + 1))
        doc["hostname"] = f"vm-{i:04d}"
        (specs / f"vm-{i:04d}.yaml").write_text(yaml.safe_dump(doc))
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--spec", type=Path, default=ROOT / "samples" / "rich.yaml")
    args = parser.parse_args()
    for tool in ("genisoimage", "mkfs.vfat", "mcopy", "truncate"):
        if not shutil.which(tool) and not shutil.which(tool, path="/usr/sbin:/sbin"):
            sys.exit(f"missing tool {tool} (scripts/debian-packages.txt)")
    for package in ("configdrive", "metadata_content"):
        compileall.compile_dir(ROOT / package, quiet=1)

    from configdrive.images.build import Job, build_one, render_drive_files
    from configdrive.images.iso import write_iso
    from configdrive.images.vfat import write_vfat

    spec = args.spec.resolve()
    files = render_drive_files(spec)
    rows: list[tuple[str, float, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="cfgdrv-bench-") as tmp:
        tmp = Path(tmp)
        tree = tmp / "tree"
        write_tree(files, tree)
        out = tmp / "out"

        def ours(fmt: str) -> Callable[[], None]:
            def run() -> None:
                build_one(Job(spec, out), fmt, size=None, epoch=1700000000, force=True)
            return run

        def image_only(write, **kwargs) -> Callable[[], None]:
            def run() -> None:
                with open(out, "wb") as fh:
                    write(files, fh, epoch=1700000000, **kwargs)
            return run

        def cli(fmt: str) -> Callable[[], None]:
            return lambda: sh(*CLI, "build", "-i", str(spec), "-f", fmt,
                              "-o", str(out), "--force", env=EPOCH_ENV)

        def nova_iso() -> None:
            sh("genisoimage", "-o", str(out), "-ldots", "-allow-lowercase", "-allow-multidot",
               "-l", "-publisher", "bench", "-quiet", "-J", "-r", "-V", "config-2", str(tree))

        sources = [str(p) for p in sorted(tree.iterdir())]
        mtools_env = {**os.environ, "MTOOLS_SKIP_CHECK": "0"}

        def nova_vfat() -> None:
            out.unlink(missing_ok=True)
            sh("truncate", "-s", "64M", str(out))
            sh("mkfs.vfat", "-n", "config-2", str(out))
            sh("mcopy", "-s", "-i", str(out), *sources, "::/", env=mtools_env)

        n = args.runs
        python_pass = lambda: sh(PY, "-c", "pass")  # noqa: E731
        measures = [
            ("ISO  in-process (spec->image)", ours("iso9660"), "genisoimage", nova_iso, 0.5),
            ("ISO  writer only (files->image)", image_only(write_iso), "genisoimage", nova_iso, 0.5),
            ("ISO  pycdlib writer (files->image)", image_only(write_iso, writer="pycdlib"),
             "genisoimage", nova_iso, 0),
            ("ISO  whole CLI process", cli("iso9660"), "genisoimage", nova_iso, 0),
            ("VFAT in-process (spec->image)", ours("vfat"), "truncate+mkfs+mcopy", nova_vfat, 1.0),
            ("VFAT writer only (files->image)", image_only(write_vfat), "truncate+mkfs+mcopy", nova_vfat, 1.0),
            ("VFAT whole CLI process", cli("vfat"), "truncate+mkfs+mcopy", nova_vfat, 0),
            ("ISO  whole CLI process", cli("iso9660"), "python -c pass", python_pass, 8.0),
        ]
        for name, fn, ref_name, ref, target in measures:
            ours_ms, ref_ms = paired_ms(fn, ref, n)
            rows.append((name, ours_ms, ref_name, ref_ms, target))
        specs = batch_specs(spec, args.batch, tmp)
        batch_rates = {}
        for fmt in ("iso9660", "vfat"):
            outdir = tmp / f"batch-{fmt}"
            outdir.mkdir()
            start = time.perf_counter()
            sh(*CLI, "build", "-i", str(specs), "-f", fmt, "-o", str(outdir), env=EPOCH_ENV)
            batch_rates[fmt] = args.batch / (time.perf_counter() - start)
            shutil.rmtree(outdir)
        start = time.perf_counter()
        for _i in range(min(args.batch, 100)):
            sh("genisoimage", "-o", str(out), "-ldots", "-allow-lowercase", "-allow-multidot",
               "-l", "-publisher", "bench", "-quiet", "-J", "-r", "-V", "config-2", str(tree))
        nova_rate = min(args.batch, 100) / (time.perf_counter() - start)

    print(f"spec: {spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec}, "
          f"{len(files)} files, {sum(map(len, files.values()))} bytes; medians of {n} runs")
    print(f"{'measure':38} {'ms':>8}   {'reference':22} {'ms':>8}  {'ratio':>6}  target")
    for name, ours_ms, ref, ref_ms, target in rows:
        ratio = ours_ms / ref_ms
        verdict = "" if not target else (f"<= {target:g}x " + ("ok" if ratio <= target else "MISSED"))
        print(f"{name:38} {ours_ms:8.2f}   {ref:22} {ref_ms:8.2f}  {ratio:6.2f}  {verdict}")
    print(f"batch of {args.batch} (one CLI process): ISO {batch_rates['iso9660']:.0f} images/s, "
          f"VFAT {batch_rates['vfat']:.0f} images/s; genisoimage one process per image "
          f"(files already on disk): {nova_rate:.0f} images/s")


if __name__ == "__main__":
    main()
