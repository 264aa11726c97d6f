"""Faults injected into real runs: what each does to selfsup, and what is kept.

    python benchmarks/faults.py [--work DIR]

Each row runs the CLI in a child process on scikit-learn's digits (a small convnet, so the table takes
a few minutes on 2 CPU cores) or on a folder of generated 32 x 32 PNGs, injects one fault, and prints
the exit code, selfsup's own line about it, and what was kept. "resume equal" is the largest absolute
difference between the encoder of the run stopped and resumed and that of an uninterrupted run.
The disk-full row mounts a 64 MB tmpfs and fills it during the run: it needs root, and says so when skipped.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
DIGITS = ["--data", "digits", "--backbone", "small-convnet", "--views", "small-gray", "--batch-size", "32",
          "--device", "cpu", "--quiet", "--json"]
STEPS = ["--steps", "120", "--checkpoint-every", "20"]


class Child:
    """A ``selfsup`` command in a child process: its exit code, its ``selfsup:`` lines, seconds and peak memory."""

    def __init__(self, *args: str, work: Path) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", dir=work, suffix=".err", delete=False)
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "selfsup", *args], env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=self.log)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self) -> "Child":
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = self.code = os.waitstatus_to_exitcode(status)
        self.seconds, self.peak_mb = time.time() - self.started, usage.ru_maxrss / 1024
        self.lines = [line for line in Path(self.log.name).read_text().splitlines() if line.startswith("selfsup")]
        return self

    def said(self, *words: str) -> str:
        """selfsup's line holding every word, shortened for the table."""
        found = next((line for line in self.lines if all(w in line for w in words)), "(no such line)")
        return found.replace("selfsup: ", "", 1)[:150]


def run(*args: str, work: Path) -> Child:
    return Child(*args, work=work).wait()


def wait_for(path: Path, child: Child, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists() and child.proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)


def max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(a / "encoder.safetensors"), load_file(b / "encoder.safetensors")
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def png_folder(folder: Path, n: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` gray pixels: a decompression bomb as a reader meets it."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def signal_rows(work: Path, whole: Path) -> list[tuple]:
    rows = []
    for signum, times in ((signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)):
        out = work / f"{signal.Signals(signum).name}{times}"
        child = Child("pretrain", *DIGITS, *STEPS, "--out", str(out), work=work)
        wait_for(out / "checkpoints" / "latest.json", child)
        for i in range(times):
            time.sleep(0.02 * i)  # apart, or the kernel merges two pending signals into one
            child.signal(signum)
        child.wait()
        step = json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
        resumed = run("pretrain", "--resume", "--out", str(out), "--quiet", work=work)
        kept = f"checkpoint at step {step}; resume rc {resumed.code}, equal to {max_diff(whole, out):.1g}"
        what = f"{signal.Signals(signum).name}{' twice' if times == 2 else ''} during pretrain"
        rows.append((what, child.code, child.said("stopped") if times == 1 else "(stopped at once)", kept))
    return rows


def input_rows(work: Path) -> list[tuple]:
    rows = []
    bombs = png_folder(work / "bomb")
    (bombs / "bomb.png").write_bytes(declared_png(100_000, 100_000))
    child = run("pretrain", "--data", str(bombs), "--backbone", "small-convnet", "--steps", "5", "--batch-size", "16",
                "--quiet", "--out", str(work / "bomb-run"), work=work)
    rows.append((f"PNG of {len((bombs / 'bomb.png').read_bytes())} bytes declaring 100,000 x 100,000", child.code,
                 child.said("bomb.png"), f"trained on the other 64; peak RSS {child.peak_mb:.0f} MB"))

    damaged = png_folder(work / "damaged")
    png = bytearray((damaged / "img000.png").read_bytes())
    png[60] ^= 0xFF  # a byte of the compressed image data
    (damaged / "img000.png").write_bytes(bytes(png))
    alone = subprocess.run([sys.executable, "-c", "import sys, torch, torchvision.io as io; "
                            "io.decode_image(torch.frombuffer(bytearray(open(sys.argv[1], 'rb').read()), dtype=torch.uint8))",
                            str(damaged / "img000.png")], env=ENV, capture_output=True)
    child = run("pretrain", "--data", str(damaged), "--backbone", "small-convnet", "--steps", "5", "--batch-size", "16",
                "--quiet", "--out", str(work / "damaged-run"), work=work)
    rows.append(("PNG with one flipped data byte", child.code, child.said("img000.png"),
                 f"torchvision.io.decode_image alone: exit {alone.returncode}"))

    archive = work / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(png_folder(work / "zipped").iterdir()):
            z.write(f, f.name)
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("img005.png")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(archive.read_bytes())
    raw[start + info.compress_size // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    child = run("pretrain", "--data", str(archive), "--backbone", "small-convnet", "--steps", "5", "--batch-size", "16",
                "--quiet", "--out", str(work / "zip-run"), work=work)
    rows.append(("zip member with one flipped byte", child.code, child.said("img005.png"), "the other 63 members read"))
    return rows


def disk_rows(work: Path, whole: Path) -> list[tuple]:
    rows = []
    tiny = work / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(tiny)], capture_output=True)
    if mounted.returncode != 0:
        return [("disk full during pretrain", "-", "skipped: mounting a tmpfs needs root", "-")]
    try:
        out, filler = tiny / "run", tiny / "filler"
        child = Child("pretrain", *DIGITS, *STEPS, "--out", str(out), work=work)
        wait_for(out / "checkpoints" / "step-000020.json", child)
        with open(filler, "wb") as f:  # fill the disk until the OS refuses
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        child.wait()
        pointer = json.loads((out / "checkpoints" / "latest.json").read_text())
        from safetensors.torch import load_file

        load_file(out / "checkpoints" / pointer["file"])
        filler.unlink()
        resumed = run("pretrain", "--resume", "--out", str(out), "--quiet", work=work)
        rows.append(("disk full during pretrain", child.code, child.said("cannot write"),
                     f"latest.json -> step {pointer['step']}, loads; freed and resumed: rc {resumed.code}, "
                     f"equal to {max_diff(whole, out):.1g}"))
    finally:
        subprocess.run(["umount", str(tiny)], check=False)

    out = work / "truncated"
    child = run("pretrain", *DIGITS, *STEPS, "--out", str(out), work=work)
    newest = out / "checkpoints" / "step-000120.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (out / "encoder.safetensors").unlink()
    resumed = run("pretrain", "--resume", "--out", str(out), "--quiet", work=work)
    rows.append(("newest checkpoint truncated, then --resume", resumed.code, resumed.said("cannot read checkpoint"),
                 f"{resumed.said('resuming from')}; equal to {max_diff(whole, out):.1g}"))
    return rows


def lock_rows(work: Path) -> list[tuple]:
    out = work / "locked"
    first = Child("pretrain", *DIGITS, *STEPS, "--out", str(out), work=work)
    wait_for(out / "checkpoints" / "latest.json", first)
    second = run("pretrain", "--resume", "--out", str(out), "--quiet", work=work)
    first.wait()
    rows = [("a second --resume into a running run's OUT", second.code, second.said("in use"),
             f"the first ran on: rc {first.code}")]
    stale = work / "stale"
    stale.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (stale / ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "command": "pretrain",
                                             "started": "2026-01-01T00:00:00"}))
    child = run("pretrain", *DIGITS, "--steps", "5", "--out", str(stale), work=work)
    rows.append(("OUT/.lock left by a dead process", child.code, child.said("taking over"), "the run went on"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="selfsup-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    whole = work / "whole"
    base = run("pretrain", *DIGITS, *STEPS, "--out", str(whole), work=work)
    assert base.code == 0, base.lines
    rows = signal_rows(work, whole) + input_rows(work) + disk_rows(work, whole) + lock_rows(work)
    print("| fault injected | exit | selfsup's line | what was kept |")
    print("|---|---|---|---|")
    for what, code, line, kept in rows:
        print(f"| {what} | {code} | {line} | {kept} |")


if __name__ == "__main__":
    main()
