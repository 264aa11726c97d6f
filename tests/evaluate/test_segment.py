"""Segmentation downstream: the U-Net on each encoder, crops, sliding windows, scores, and the model out."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from conftest import run_cli, square_pair, write_source

import selfsup
from selfsup.backbones import build_backbone
from selfsup.backbones.io import load_backbone, save_encoder
from selfsup.downstream.dense import sliding_window_logits
from selfsup.evaluate.segment import noisy, random_crops
from selfsup.heads.unet import UNet
from selfsup.losses.segmentation import segmentation_loss, soft_dice
from selfsup.utils.segmetrics import confusion, scores
from selfsup.views import Normalization


@pytest.mark.parametrize("name,stem", [("resnet18", "imagenet"), ("resnet18", "small"), ("small-convnet", "small")])
def test_the_unet_carries_the_saved_encoder_strictly_and_reads_its_stages(tmp_path, name, stem):
    torch.manual_seed(0)
    saved = build_backbone(name, 1, stem, 64)
    save_encoder(tmp_path, saved, Normalization([0.5], [0.25]), 64, 64)
    encoder, _ = load_backbone(tmp_path)  # strict: every key of the file, no other
    model = UNet(encoder, 3).eval()
    own = model.encoder.backbone.model.state_dict()
    assert own.keys() == saved.model.state_dict().keys()
    assert all(torch.equal(own[k], v) for k, v in saved.model.state_dict().items())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        deepest = model.encoder(x)[-1]
        saved.eval()
        torch.testing.assert_close(deepest.mean((2, 3)), saved(x))  # the stages are the encoder's own forward
        assert model(x).shape == (2, 3, 64, 64)


def test_crops_flip_and_rotate_image_and_mask_alike():
    image = torch.randint(0, 255, (1, 40, 56), dtype=torch.uint8)
    views, labels = random_crops([image], [image[0].long()], np.zeros(64, dtype=int), 24, torch.Generator().manual_seed(0))
    assert views.shape == (64, 1, 24, 24) and torch.equal(views[:, 0].long(), labels)
    corners = {tuple(v[0, :2, :2].flatten().tolist()) for v in views}
    assert len(corners) > 30  # crops differ: positions, flips and rotations drawn per image


def test_noise_changes_the_image_only_within_its_drawn_strength():
    views = torch.full((256, 1, 16, 16), 128, dtype=torch.uint8)
    out = noisy(views, 0.1, torch.Generator().manual_seed(0))
    spread = (out.float() - 128).std(dim=(1, 2, 3))
    assert out.dtype == torch.uint8 and spread.max() <= 0.1 * 255 * 1.3  # σ ≤ 25.5 grey levels
    assert spread.min() < 3 and spread.max() > 20  # a strength per crop, from ~0 to the largest
    assert torch.equal(noisy(views, 0.0, torch.Generator()), views)


def test_sliding_windows_equal_the_whole_image_pass():
    torch.manual_seed(0)
    unet = UNet(build_backbone("small-convnet", 1, "small", 32), 2).eval()
    image = torch.randn(1, 64, 48)
    with torch.no_grad():
        whole = unet(image[None])[0]
    torch.testing.assert_close(sliding_window_logits(unet, image, window=64), whole)  # one window covers it
    pointwise = nn.Conv2d(1, 3, 1)  # no context: any tiling must give the whole-image logits back exactly
    with torch.no_grad():
        expected = pointwise(image[None])[0]
    torch.testing.assert_close(sliding_window_logits(pointwise, image, window=20, overlap=0.5), expected)


def test_iou_dice_and_pixel_accuracy_by_hand():
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    predicted = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0], [2, 2, 1, 2]])
    got = scores(confusion(predicted, truth, 3))
    # class 0: TP 3, FP 1, FN 1; class 1: TP 3, FP 2, FN 1; class 2: TP 3, FP 0, FN 1
    assert got["iou"] == pytest.approx([3 / 5, 3 / 6, 3 / 4])
    assert got["dice"] == pytest.approx([6 / 8, 6 / 9, 6 / 7])
    assert got["mean_iou"] == pytest.approx((3 / 5 + 3 / 6 + 3 / 4) / 3) and got["pixel_accuracy"] == pytest.approx(9 / 12)
    absent = scores(confusion(torch.zeros(4), torch.zeros(4), 2))
    assert math.isnan(absent["iou"][1]) and absent["mean_iou"] == 1.0  # a class nowhere is left out of the means


def test_soft_dice_and_the_loss_follow_their_formulas():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    p = logits.softmax(1)
    expected = np.mean([(2 * (p[:, c] * (masks == c)).sum() + 1) / (p[:, c].sum() + (masks == c).sum() + 1)
                        for c in range(3)])
    assert float(soft_dice(logits, masks)) == pytest.approx(float(expected), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, masks)
    assert float(segmentation_loss(logits, masks)) == pytest.approx(float(ce + 1 - soft_dice(logits, masks)), rel=1e-6)


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """Bright squares to segment: 6 training and 2 test pairs of 48-px gray images."""
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    write_source(root, {f"t{i}": square_pair(rng) for i in range(6)}, "train")
    write_source(root, {f"v{i}": square_pair(rng) for i in range(2)}, "test")
    return root


def test_train_predict_and_export_a_segmentation_model(squares, tmp_path):
    import onnxruntime

    done = run_cli("train", "--task", "segmentation", "--init", "random", "--backbone", "small-convnet", "--labeled",
                   str(squares), "--labeled-images", "3", "--crop-size", "32", "--steps", "12", "--batch-size", "4",
                   "--lr-grid", "0.01,0.03", "--out", str(tmp_path / "model"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    trained = json.loads(done.stdout.splitlines()[-1])
    assert trained["n_labeled_images"] == 3 and set(trained["validation_scores"]) == {"0.01", "0.03"}
    predicted = run_cli("predict", "--model", str(tmp_path / "model"), "--data", str(squares), "--out",
                        str(tmp_path / "masks"), "--json", "--quiet")
    assert predicted.returncode == 0, predicted.stderr
    result = json.loads(predicted.stdout.splitlines()[-1])
    assert result["split"] == "test" and result["scores"] == trained["test"]  # the same figure, from the PNGs' run
    mask = np.array(Image.open(tmp_path / "masks" / "v0.png"))
    assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255}
    model = selfsup.load_model(tmp_path / "model")
    masks, _ = model.predict([squares / "test" / "images" / "v0.png"])
    assert np.array_equal(np.where(masks[0].numpy() == 1, 255, 0), mask)
    exported = run_cli("export", "--model", str(tmp_path / "model"), "--json")
    assert exported.returncode == 0, exported.stderr
    session = onnxruntime.InferenceSession(str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in ((1, 1, 48, 48), (3, 1, 40, 64)):  # any batch and any image size
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0]), model(x),
                                       atol=1e-4, rtol=0)


def test_finetune_compares_scratch_and_pretrained_on_the_same_labeled_images(squares, tmp_path):
    from selfsup.backbones.io import save_encoder as save

    torch.manual_seed(0)
    (tmp_path / "encoder").mkdir()
    save(tmp_path / "encoder", build_backbone("small-convnet", 1, "small", 32), Normalization([0.3], [0.3]), 32, 32)
    done = run_cli("finetune", "--task", "segmentation", "--checkpoint", str(tmp_path / "encoder"), "--labeled",
                   str(squares), "--labeled-images", "1,2", "--seeds", "2", "--steps", "4", "--batch-size", "2",
                   "--crop-size", "32", "--lr-grid", "0.01,0.03", "--out", str(tmp_path / "ft"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])["rows"]
    assert [(r["labeled_images"], r["n_labeled_images"], r["seeds"]) for r in rows] == [(1, 1, 2), (2, 2, 2)]
    assert rows[0]["scratch_lr"] == [0.01, 0.01]  # one image: nothing to validate on, the grid's smallest
    assert all(0 <= r[f"{init}_mean_iou"] <= 1 for r in rows for init in ("scratch", "pretrained"))
    finals = sorted(p.parent.name for p in (tmp_path / "ft" / "trainings").rglob("final/result.json"))
    assert len(finals) == 8  # 2 budgets x 2 seeds x (scratch, pretrained)
