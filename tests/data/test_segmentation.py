"""Segmentation sources: images/ and masks/ paired by stem; bad pairs named once and skipped, never repaired."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import png, square_pair, write_source

from selfsup.data.segmentation import open_segmentation
from selfsup.utils.errors import SelfSupError


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def test_pairs_by_stem_and_names_every_bad_pair(tmp_path, caplog):
    rng = np.random.default_rng(0)
    good = {f"s{i}": square_pair(rng) for i in range(4)}
    write_source(tmp_path, good)
    (tmp_path / "images" / "lonely.png").write_bytes(png(square_pair(rng)[0]))  # no mask
    image, mask = square_pair(rng)
    (tmp_path / "images" / "wrong_size.png").write_bytes(png(image))
    (tmp_path / "masks" / "wrong_size.png").write_bytes(png(mask[:40]))
    image, mask = square_pair(rng)
    (tmp_path / "images" / "compressed.png").write_bytes(png(image))
    (tmp_path / "masks" / "compressed.png").write_bytes(jpeg(mask))  # JPEG values around every edge
    caplog.set_level(logging.INFO, logger="selfsup")
    data = open_segmentation(str(tmp_path))["all"]
    assert [k.split("/")[-1] for k in data.keys] == ["s0.png", "s1.png", "s2.png", "s3.png"]
    assert data.classes == ["0", "255"]
    for (image, mask), got_image, got_mask in zip(good.values(), data.images, data.masks):
        assert torch.equal(got_image[0], torch.from_numpy(image))
        assert torch.equal(got_mask, torch.from_numpy(mask // 255).long())  # 0/255 read as classes 0 and 1
    assert caplog.text.count("lonely.png (has no mask of the same name)") == 1
    assert caplog.text.count("mask is 48x40 but its image 48x48") == 1
    assert caplog.text.count("skipped mask masks/compressed.png") == 1
    with pytest.raises(SelfSupError, match="bad image/mask pair images/lonely.png"):
        open_segmentation(str(tmp_path), strict=True)


def test_split_sources_index_masks_and_arrays(tmp_path):
    rng = np.random.default_rng(1)
    three = {}
    for i in range(3):
        image, mask = square_pair(rng)
        three[f"p{i}"] = (image, (mask // 255) * (i % 3))  # class indices 0..2
    write_source(tmp_path / "wrapped", three, "train")
    write_source(tmp_path / "wrapped", dict(list(three.items())[:1]), "test")
    opened = open_segmentation(str(tmp_path / "wrapped"))
    assert set(opened) == {"train", "test"} and len(opened["train"]) == 3 and opened["train"].classes == ["0", "1", "2"]
    x = np.stack([three[k][0] for k in three])
    y = np.stack([three[k][1] for k in three])
    np.savez(tmp_path / "pairs.npz", x=x, masks=y)
    arrays = open_segmentation(str(tmp_path / "pairs.npz"))["all"]
    assert len(arrays) == 3 and torch.equal(arrays.masks[2], torch.from_numpy(y[2]).long())
    np.savez(tmp_path / "bad.npz", x=x, masks=y[:, :10])
    with pytest.raises(SelfSupError, match="masks are shaped"):
        open_segmentation(str(tmp_path / "bad.npz"))


def test_pretraining_reads_training_and_unlabeled_images_as_native_crops(tmp_path):
    from selfsup.data.crops import native_crops, segmentation_pool

    rng = np.random.default_rng(2)
    write_source(tmp_path, {"a": square_pair(rng, 64)}, "train")
    write_source(tmp_path, {"b": square_pair(rng, 64)}, "test")
    (tmp_path / "unlabeled").mkdir()
    (tmp_path / "unlabeled" / "u.png").write_bytes(png(square_pair(rng, 64)[0]))
    pool = segmentation_pool(str(tmp_path))
    assert pool is not None and sorted(pool.keys) == ["train/images/a.png", "unlabeled/u.png"]  # no mask, no test
    crops, per_image = native_crops(pool, 1, 24)
    assert per_image == 25 and crops.array.shape == (50, 1, 24, 24)  # starts 0, 12, 24, 36 and 40 (flush) each way
    image = np.array(Image.open(tmp_path / "train" / "images" / "a.png"))
    assert np.array_equal(crops.array[6, 0], image[12:36, 12:36])  # native pixels, not resized
    assert np.array_equal(crops.array[24, 0], image[40:64, 40:64])
    assert segmentation_pool(str(tmp_path / "unlabeled")) is None  # not a segmentation source
