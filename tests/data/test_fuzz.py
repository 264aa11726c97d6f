"""Fuzzed readers (Hypothesis): random and mutated bytes as images, archives, array files, shards, text tables,
videos and volumes. Every outcome is a result, a named skip, or a SelfSupError (the command line's one line,
exit 1 or 2); never another exception, a hang or a traceback.

Each reader gets ``EXAMPLES`` examples, derandomized so the suite is deterministic; mutations start from a
real file of the format (one byte flipped, a run overwritten, or the file cut), which reaches further into a
decoder than random bytes, which most readers reject at the magic number.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cifar_members, run_cli
from selfsup.data import Prepared, open_source, probe_spec
from selfsup.data.decode import DecodeError, decode_bytes
from selfsup.utils.errors import SelfSupError

EXAMPLES = 100
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
JPEG = cifar_members(1)[0][1]


def mutated(seed_bytes: bytes) -> st.SearchStrategy[bytes]:
    """``seed_bytes`` with a byte flipped, a run overwritten, or its tail cut; or random bytes."""
    n = len(seed_bytes)

    def flip(args: tuple[int, int]) -> bytes:
        at, value = args
        data = bytearray(seed_bytes)
        data[at % n] ^= value or 1
        return bytes(data)

    def overwrite(args: tuple[int, bytes]) -> bytes:
        at, run = args
        at %= n
        return seed_bytes[:at] + run + seed_bytes[at + len(run):]

    return st.one_of(st.tuples(st.integers(0, n - 1), st.integers(0, 255)).map(flip),
                     st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=64)).map(overwrite),
                     st.integers(0, n - 1).map(lambda cut: seed_bytes[:cut]),
                     st.binary(max_size=512))


def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(48 * 3, dtype=np.uint8).reshape(12, 4, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def clean(call) -> object:
    """``call()``'s result, or None when it raised SelfSupError; any other exception fails the test."""
    try:
        return call()
    except SelfSupError:
        return None


@fuzz
@given(data=st.one_of(mutated(JPEG), mutated(png_bytes())))
def test_image_bytes_decode_or_raise_decode_error(data):
    try:
        image = decode_bytes(data)
    except DecodeError:
        return
    assert image.dtype.is_floating_point is False and image.ndim == 3


def _archive(kind: str, members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    else:
        with tarfile.open(fileobj=buffer, mode="w") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ARCHIVE_MEMBERS = {f"train/{name.split('/')[1]}/{i}.jpg": data for i, (name, data) in enumerate(cifar_members(1)[:3])}


@fuzz
@given(kind=st.sampled_from(["zip", "tar"]), data=st.data())
def test_archives_open_and_decode_or_fail_by_name(tmp_path_factory, kind, data):
    raw = data.draw(mutated(_archive(kind, ARCHIVE_MEMBERS)))
    path = tmp_path_factory.mktemp("archive") / f"images.{kind}"
    path.write_bytes(raw)
    opened = clean(lambda: open_source(str(path)))
    for collection in (opened or {}).values():
        clean(lambda: Prepared(collection, probe_spec(collection), progress=False))


def _npy(array: np.ndarray, npz: bool) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=array, y=np.arange(len(array))) if npz else np.save(buffer, array)
    return buffer.getvalue()


@fuzz
@given(npz=st.booleans(), data=st.data())
def test_array_files_load_or_fail_by_name(tmp_path_factory, npz, data):
    raw = data.draw(mutated(_npy(np.arange(4 * 3 * 8 * 8, dtype=np.uint8).reshape(4, 3, 8, 8), npz)))
    path = tmp_path_factory.mktemp("arrays") / ("x.npz" if npz else "x.npy")
    path.write_bytes(raw)
    clean(lambda: open_source(str(path)))


@fuzz
@given(data=st.data())
def test_shards_stream_or_fail_by_name(tmp_path_factory, data):
    from selfsup.data.shards import list_shards, open_shard, samples

    members = {f"s{i:03d}.jpg": body for i, body in enumerate(ARCHIVE_MEMBERS.values())}
    members.update({f"s{i:03d}.cls": b"%d" % i for i in range(3)})
    path = tmp_path_factory.mktemp("shards") / "shard-000.tar"
    path.write_bytes(data.draw(mutated(_archive("tar", dict(sorted(members.items()))))))
    if clean(lambda: list_shards(str(path))) is not None:
        clean(lambda: list(samples(open_shard(str(path)), str(path))))


@fuzz
@given(suffix=st.sampled_from([".tsv", ".csv"]), data=st.data())
def test_text_tables_read_or_fail_by_name(tmp_path_factory, suffix, data):
    from selfsup.data.text import read_texts

    sep = "\t" if suffix == ".tsv" else ","
    table = f"sentence{sep}label\na fine film{sep}1\nawful{sep}0\n".encode()
    path = tmp_path_factory.mktemp("texts") / f"t{suffix}"
    path.write_bytes(data.draw(mutated(table)))
    clean(lambda: read_texts(path))


@pytest.fixture(scope="module")
def real_video(tmp_path_factory) -> bytes:
    pytest.importorskip("av")
    from selfsup.data.video import write_video

    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("video") / "v.mp4", frames).read_bytes()


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_videos_and_volumes_decode_or_are_skipped_by_name(tmp_path_factory, real_video, data):
    from selfsup.data.decoded import decoded_pool
    from selfsup.data.video import ClipSpec
    from selfsup.data.volume import VolumeSpec

    root = tmp_path_factory.mktemp("decoded")
    (root / "clips").mkdir()
    (root / "clips" / "a.mp4").write_bytes(data.draw(mutated(real_video)))
    (root / "clips" / "b.mp4").write_bytes(real_video)
    (root / "volumes").mkdir()
    (root / "volumes" / "a.npy").write_bytes(data.draw(mutated(_npy(np.ones((8, 8, 8), np.float32), False))))
    (root / "volumes" / "b.npy").write_bytes(_npy(np.ones((8, 8, 8), np.float32), False))
    for folder, kind, spec in (("clips", "video", ClipSpec(frames=2, stride=1, size=8)),
                               ("volumes", "volume", VolumeSpec(size=8))):
        collection = clean(lambda: open_source(str(root / folder), kind=kind))
        if collection is not None:
            pool = clean(lambda: decoded_pool(collection["all"], spec, progress=False))
            assert pool is None or len(pool) >= 1  # the intact file is always kept


def test_a_folder_of_fuzzed_files_ends_in_one_line_and_no_run_folder_to_misread(tmp_path):
    """End to end: pretrain on a folder where nothing decodes exits 1 with one `selfsup: error:` line, and
    leaves no checkpoint that --resume could misread."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        (folder / f"x{i}.jpg").write_bytes(JPEG[:40] + rng.bytes(200))
    out = tmp_path / "run"
    result = run_cli("pretrain", "--data", str(folder), "--steps", "2", "--out", str(out), "--quiet")
    errors = [line for line in result.stderr.splitlines() if line.startswith("selfsup: error:")]
    assert result.returncode in (1, 2) and len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and not (out / "checkpoints").exists()


def test_damaged_pngs_are_a_decode_error_not_a_crash():
    """torchvision 0.29's PNG decoder ends the process (SIGSEGV) on any libpng error; selfsup checks a PNG's
    chunks and data before handing it over. Run in a child process, so a regression fails this test alone."""
    import subprocess
    import sys

    script = """
import io, numpy as np
from PIL import Image
from selfsup.data.decode import DecodeError, decode_bytes
buffer = io.BytesIO()
Image.fromarray(np.arange(144, dtype=np.uint8).reshape(12, 4, 3)).save(buffer, "PNG")
png = bytearray(buffer.getvalue())
flipped = bytearray(png); flipped[45] ^= 1                     # a byte of the compressed image data
tail = bytes(png[:65]) + bytes(range(100, 137))                # the chunks after the image data overwritten
for damaged in (bytes(flipped), tail, bytes(png[:60])):
    try:
        decode_bytes(damaged)
        raise SystemExit("decoded a damaged PNG")
    except DecodeError as exc:
        print(exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-500:])
    assert len(result.stdout.splitlines()) == 3
