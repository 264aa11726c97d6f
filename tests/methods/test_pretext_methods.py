"""The classic pretext tasks end to end: pretrain with --show-batch, transfer through eval, learn on real images."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.backbones import build_backbone
from selfsup.backbones.io import load_backbone
from selfsup.cli import main
from selfsup.methods import METHODS
from selfsup.views import Normalization, Views
from selfsup.views.kernels import LUMA

PRETEXT = ["rotation", "relative_patch", "jigsaw", "colorization", "inpainting", "autoencoder",
           "denoising_autoencoder", "mae", "corruption"]


@pytest.mark.parametrize("name", PRETEXT)
def test_pretext_method_pretrains_draws_its_batch_and_transfers(tmp_path, cifar_folder, name):
    out, picture = tmp_path / "run", tmp_path / "batch.png"
    backbone = [] if name == "mae" else ["--backbone", "small-convnet"]
    code = main(["pretrain", "--method", name, "--data", str(cifar_folder / "train"), "--test", str(cifar_folder / "test"),
                 *backbone, "--batch-size", "16", "--steps", "3", "--quiet", "--show-batch", str(picture),
                 "--out", str(out)])
    assert code == 0
    with Image.open(picture) as im:  # a real PNG with several rows of images
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 100
    info = json.loads((out / "encoder.json").read_text())
    assert info["backbone"]["in_channels"] == 3  # colorization's 1-channel encoder is saved for RGB
    result = json.loads((out / "result.json").read_text())
    assert 0 <= result["knn_top1"] <= 1 and np.isfinite(result["final_loss"])
    assert main(["eval", "knn", "--checkpoint", str(out), "--labeled", str(cifar_folder / "train"),
                 "--test", str(cifar_folder / "test"), "--quiet"]) == 0
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "pretext_accuracy" in header
    if name in ("colorization", "mae"):  # the unusual encoders (adapted to RGB; a ViT) fine-tune like any other
        assert main(["finetune", "--checkpoint", str(out), "--labeled", str(cifar_folder / "train"),
                     "--test", str(cifar_folder / "test"), "--labels-per-class", "1", "--seeds", "1", "--steps", "2",
                     "--quiet"]) == 0


def test_rotation_learns_its_task_on_real_images(tmp_path, cifar_folder):
    """40 steps on 80 real CIFAR images: 4-way rotation accuracy on 40 unseen test images (160 rotations)
    well above chance (0.25; 0.40 is 4.4 binomial standard deviations above it)."""
    from selfsup.data.images import Prepared, probe_spec
    from selfsup.data.sources import open_source
    from selfsup.evaluate.pretext import pretext_score

    out = tmp_path / "rot"
    assert main(["pretrain", "--method", "rotation", "--data", str(cifar_folder), "--backbone", "small-convnet",
                 "--batch-size", "16", "--steps", "40", "--quiet", "--out", str(out)]) == 0
    test = open_source(str(cifar_folder))["test"]
    score = pretext_score(out, Prepared(test, probe_spec(test)))
    assert score["pretext_accuracy"] > 0.40, score
    first = float((out / "metrics.csv").read_text().splitlines()[1].split(",")[2])
    assert score["pretext_loss"] < first


def test_colorization_rgb_encoder_sees_the_lightness_it_learned_on():
    """The exported first convolution on an RGB image equals the 1-channel encoder on its luma,
    normalized as in pretraining (w_c = w_L · luma_c · σ_c / σ_L)."""
    torch.manual_seed(0)
    norm = Normalization([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    cls = METHODS.get("colorization")
    method = cls(build_backbone("resnet18", 1, "small", 16), Views.preset("pretext", 16, norm)).eval()
    rgb_encoder, rgb_norm = method.export_encoder()
    assert rgb_encoder.spec.in_channels == 3 and method.backbone.spec.in_channels == 1
    rgb = torch.rand(4, 3, 16, 16)
    mean, std = torch.tensor(rgb_norm.mean)[:, None, None], torch.tensor(rgb_norm.std)[:, None, None]
    luma = sum(w * rgb[:, c] for c, w in enumerate(LUMA))[:, None]
    expected = method.backbone((luma - method.l_mean) / method.l_std)
    torch.testing.assert_close(rgb_encoder.eval()((rgb - mean) / std), expected, atol=1e-4, rtol=1e-4)


def test_colorization_step_checkpoint_describes_its_one_channel_encoder(tmp_path, cifar_folder):
    out = tmp_path / "col"
    assert main(["pretrain", "--method", "colorization", "--data", str(cifar_folder / "train"), "--backbone",
                 "small-convnet", "--batch-size", "16", "--steps", "2", "--quiet", "--out", str(out)]) == 0
    step = sorted((out / "checkpoints").glob("step-*.safetensors"))[-1]
    backbone, info = load_backbone(step)
    assert info["backbone"]["in_channels"] == 1 and len(info["normalization"]["mean"]) == 1
    assert backbone(torch.zeros(2, 1, 32, 32)).shape == (2, backbone.feature_dim)


@pytest.mark.parametrize("args, message", [
    (["--method", "colorization", "--data", "digits"], "colour"),
    (["--method", "mae", "--data", "digits", "--backbone", "small-convnet"], "ViT backbone"),
    (["--method", "mae", "--data", "digits"], "need at least 2 values a patch"),  # 8-px digits: 1x1 patches
    (["--method", "jigsaw", "--data", "digits", "--backbone", "small-convnet", "--method-arg", "num_permutations=0"],
     "count must be"),
])
def test_pretext_configuration_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["pretrain", *args, "--steps", "1", "--batch-size", "8", "--quiet", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("name", ["colorization", "inpainting"])
def test_dense_tasks_build_on_a_stock_resnet_whose_last_map_is_one_pixel(name):
    """The table's setting: a stock ResNet-18 (ImageNet stem) on 32 px views ends in a 1 x 1 map; sizing the
    decoder must not run batch norm in training mode on a single value per channel."""
    cls = METHODS.get(name)
    backbone = build_backbone("resnet18", cls.input_channels or 3, "imagenet", 32)
    method = cls(backbone, Views.preset(cls.recipe.views, 32, Normalization([0.5] * 3, [0.25] * 3)))
    assert backbone.training and backbone.feature_map_shape(32) == (512, 1)
    images = (torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    assert torch.isfinite(method(images, torch.Generator().manual_seed(0))["loss"])


def test_relative_patch_all_pairs_reads_each_grid_once_and_classifies_its_8_pairs():
    """all_pairs (Kolesnikov et al. 2019): one backbone pass over the 9 patches of each image, then the
    cross-entropy of all 8 (centre, neighbour) pairs, as computed here from the grid's own features."""
    import torch.nn.functional as F

    from selfsup.views.jigsaw import NEIGHBOUR_CELLS

    norm = Normalization([0.5] * 3, [0.25] * 3)
    images = (torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    torch.manual_seed(0)
    backbone = build_backbone("small-convnet", 3, "small", 32)
    method = METHODS.get("relative_patch")(backbone, Views.preset("pretext", 32, norm), all_pairs=True).eval()
    seen = []
    hook = backbone.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    out = method(images, torch.Generator().manual_seed(1))
    hook.remove()
    assert seen == [(4 * 9, 3, 8, 8)]
    with torch.no_grad():
        grid = method.grids(images, torch.Generator().manual_seed(1))  # the same draws as forward's
        features = backbone(grid.flatten(0, 1)).view(4, 9, -1)
        logits = torch.stack([method.classifier(torch.cat([features[b, 4], features[b, cell]])[None])[0]
                              for b in range(4) for cell in NEIGHBOUR_CELLS])
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, torch.arange(8).repeat(4)))
    # Doersch et al.'s one random pair per image: two patches of each image in one pass.
    single = METHODS.get("relative_patch")(backbone, Views.preset("pretext", 32, norm), all_pairs=False)
    backbone.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    assert torch.isfinite(single(images, torch.Generator().manual_seed(1))["loss"]) and seen[-1] == (4 * 2, 3, 8, 8)


@pytest.mark.parametrize("name, arg, patches, cut", [("relative_patch", "patch_input", 9 * 4, 8),
                                                     ("jigsaw", "tile_input", 9 * 4, 7)])
def test_tile_tasks_can_feed_their_patches_at_the_backbones_input_size(name, arg, patches, cut):
    """Patches of a 32-px view (relative patch's quarter, 8 px, all 9 of its grid; jigsaw's ¾ of a 10-px
    cell, 7 px) reach the backbone as cut, or resized to the 32 px asked for."""
    norm = Normalization([0.5] * 3, [0.25] * 3)
    images = (torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    for size, side in ((None, cut), (32, 32)):
        torch.manual_seed(0)
        backbone = build_backbone("small-convnet", 3, "small", 32)
        method = METHODS.get(name)(backbone, Views.preset("pretext", 32, norm), **{arg: size})
        seen = []
        backbone.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
        loss = method(images, torch.Generator().manual_seed(0))["loss"]
        assert seen == [(patches, 3, side, side)] and torch.isfinite(loss)
