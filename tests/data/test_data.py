import io
import json
import tarfile
import zipfile

import numpy as np
import pytest

from conftest import CIFAR_ZIP, cifar_members, make_jpeg, needs_shared
from selfsup.data import Prepared, labeled_subset, open_source, parse_labels_per_class, probe_spec, train_test
from selfsup.utils.errors import ConfigError, SelfSupError


def _cifar_layout_zip(path, split_sizes=(("train", 8), ("test", 4))):
    """A zip laid out as the shared CIFAR-10 archive (split/class/NNNN.jpg, stored), from the slice."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for split, n in split_sizes:
            for name, data in cifar_members(n, split):
                z.writestr(name, data)
    return path


def test_cifar_zip_read_in_place_with_splits_and_classes(tmp_path):
    opened = open_source(str(_cifar_layout_zip(tmp_path / "cifar10-jpeg.zip")))
    assert set(opened) == {"train", "test"}
    train, test = opened["train"], opened["test"]
    assert (len(train), len(test)) == (80, 40)
    assert train.classes == test.classes and len(train.classes) == 10 and train.classes[0] == "airplane"
    assert np.bincount(train.labels).tolist() == [8] * 10
    data = Prepared(test.subset(np.arange(0, 40, 4)), probe_spec(test), progress=False)
    assert data.array.shape == (10, 3, 32, 32) and data.array.dtype == np.uint8


@needs_shared
def test_the_shared_cifar_zip_holds_the_full_splits():
    train, test = (lambda o: (o["train"], o["test"]))(open_source(str(CIFAR_ZIP)))
    assert (len(train), len(test)) == (50000, 10000) and np.bincount(train.labels).tolist() == [5000] * 10


def test_folder_labels_and_flat_unlabeled(tmp_path, cifar_folder):
    opened = open_source(str(cifar_folder))
    assert len(opened["train"]) == 80 and len(opened["test"]) == 40 and opened["train"].has_labels
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        (flat / f"{i}.jpg").write_bytes(make_jpeg(rng))
    (flat / "notes.txt").write_text("not an image")
    pool = open_source(str(flat))["all"]
    assert len(pool) == 3 and not pool.has_labels


def test_tar_and_zip_archives_equal_the_folder(tmp_path, cifar_folder):
    members = cifar_members(2)
    with tarfile.open(tmp_path / "pool.tar", "w") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(tmp_path / "pool.zip", "w") as z:
        for name, data in members:
            z.writestr(name, data)
    arrays = []
    for archive in ("pool.tar", "pool.zip"):
        coll = open_source(str(tmp_path / archive))["all"]
        assert coll.has_labels and len(coll) == 20
        arrays.append(Prepared(coll, probe_spec(coll), progress=False).array)
    assert np.array_equal(arrays[0], arrays[1])


def test_numpy_arrays_and_digits(tmp_path):
    images = np.random.default_rng(0).random((10, 16, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "set.npz", x=images, y=np.arange(10) % 2)
    coll = open_source(str(tmp_path / "set.npz"))["all"]
    assert coll.array.shape == (10, 3, 16, 16) and coll.array.dtype == np.uint8 and coll.has_labels
    digits = open_source("digits")["all"]
    assert digits.array.shape == (1797, 1, 8, 8)
    assert digits.array.max() == 255  # rescaled from 0..16
    with pytest.raises(SelfSupError, match="expected images"):
        open_source(str(_save(tmp_path / "bad.npy", np.zeros(5))))


def _save(path, array):
    np.save(path, array)
    return path


def test_bad_files_are_named_once_and_skipped(tmp_path, caplog):
    rng = np.random.default_rng(0)
    good = make_jpeg(rng)
    for i in range(4):
        (tmp_path / f"ok{i}.jpg").write_bytes(make_jpeg(rng))
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a jpeg")
    coll = open_source(str(tmp_path))["all"]
    data = Prepared(coll, probe_spec(coll), progress=False)
    assert len(data) == 4 and data.skipped == 3
    for bad in ("truncated.jpg", "empty.jpg", "text.jpg"):
        assert sum(bad in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(SelfSupError, match="unreadable image"):
        Prepared(coll, probe_spec(coll), strict=True, progress=False)


def test_missing_and_unsupported_data(tmp_path):
    with pytest.raises(SelfSupError, match="not found"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(SelfSupError, match="unsupported"):
        open_source(str(tmp_path / "x.csv"))
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(SelfSupError, match="corrupt zip"):
        open_source(str(tmp_path / "broken.zip"))


def test_stratified_split_saved_once_and_reused(tmp_path):
    train, test = train_test("digits", out_dir=tmp_path)
    assert len(train) + len(test) == 1797 and abs(len(test) / 1797 - 0.2) < 0.01
    assert set(train.keys).isdisjoint(test.keys)
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved["test"] == test.keys
    again_train, again_test = train_test("digits", out_dir=tmp_path)
    assert again_test.keys == test.keys and again_train.keys == train.keys
    # Every class keeps its share in the held-out part.
    share = np.bincount(test.labels) / np.bincount(np.concatenate([train.labels, test.labels]))
    assert share.min() > 0.15 and share.max() < 0.25


def test_labeled_subsets_balanced_and_fixed_by_seed():
    labels = np.repeat(np.arange(5), 20)
    a = labeled_subset(labels, seed=0, per_class=3)
    assert np.bincount(labels[a]).tolist() == [3] * 5
    assert np.array_equal(a, labeled_subset(labels, seed=0, per_class=3))
    assert not np.array_equal(a, labeled_subset(labels, seed=1, per_class=3))
    assert np.bincount(labels[labeled_subset(labels, 0, fraction=0.1)]).tolist() == [2] * 5
    assert parse_labels_per_class("1,10,all") == [1, 10, None]
    with pytest.raises(ConfigError):
        parse_labels_per_class("1,ten")


def test_cifar10_name_takes_a_local_path(tmp_path):
    opened = open_source(f"cifar10:{_cifar_layout_zip(tmp_path / 'cifar10-jpeg.zip')}")
    assert len(opened["test"]) == 40 and opened["test"].classes[0] == "airplane"


def test_label_budgets_from_flags():
    from selfsup.config import FinetuneConfig
    from selfsup.evaluate.run import budgets_from

    assert budgets_from(FinetuneConfig(labels_per_class="1,all")) == [("lpc1", 1, None), ("lpc-all", None, None)]
    assert budgets_from(FinetuneConfig(label_fraction=0.01)) == [("fraction0.01", None, 0.01)]
    with pytest.raises(ConfigError, match="not both"):
        budgets_from(FinetuneConfig(labels_per_class="1", label_fraction=0.1))
    labels = np.repeat(np.arange(3), 100)
    assert np.bincount(labels[labeled_subset(labels, 0, fraction=0.01)]).tolist() == [1, 1, 1]


def declared_png(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header declares ``width`` x ``height`` 8-bit gray pixels (its data does not follow):
    what a decompression bomb looks like to a reader before it decodes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_image_declaring_more_pixels_than_the_limit_is_named_and_skipped_unread(tmp_path, caplog):
    from selfsup.data.decode import DEFAULT_MAX_PIXELS, DecodeError, check_pixels, set_max_pixels

    bomb = declared_png(100_000, 100_000)  # 10 billion pixels: 10 GB as gray if decoded
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"ok{i}.jpg").write_bytes(make_jpeg(rng))
    (folder / "bomb.png").write_bytes(bomb)
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    for source in (folder, tmp_path / "images.zip"):
        caplog.clear()
        coll = open_source(str(source))["all"]
        data = Prepared(coll, probe_spec(coll), progress=False)
        assert len(data) == 3 and data.skipped == 1
        named = [r.getMessage() for r in caplog.records if "bomb.png" in r.getMessage()]
        assert len(named) == 1 and "declares 100,000 x 100,000 pixels, above --max-pixels 89,478,485" in named[0]
    try:
        set_max_pixels(1000)  # --max-pixels 1000: a 32 x 32 JPEG (1,024 pixels) is now too large
        with pytest.raises(DecodeError, match="32 x 32 pixels"):
            check_pixels(make_jpeg(rng))
        set_max_pixels(0)  # no limit: the header is not read
        check_pixels(bomb)
    finally:
        set_max_pixels(DEFAULT_MAX_PIXELS)


def test_header_sizes_read_without_pillow_agree_with_pillow():
    """The PNG/JPEG header reader behind the pixel limit gives Pillow's size on every committed image, on a
    progressive JPEG and on a PNG, and leaves other formats to Pillow."""
    from PIL import Image

    from selfsup.data.decode import _png_or_jpeg_size

    images = [data for _, data in cifar_members(8)]
    for size, fmt, extra in (((40, 30), "PNG", {}), ((33, 17), "JPEG", {"progressive": True}), ((5, 9), "BMP", {})):
        buffer = io.BytesIO()
        Image.new("RGB", size).save(buffer, fmt, **extra)
        images.append(buffer.getvalue())
    for data in images:
        read = _png_or_jpeg_size(data)
        assert read is None if data[:2] == b"BM" else read == Image.open(io.BytesIO(data)).size
