"""--init: torchvision-keyed weights loaded strictly, the 1-channel and small-stem adaptations, ImageNet's
weights from the torch cache (never downloaded here) and the one-line failure offline."""
from __future__ import annotations

import logging
import urllib.error

import pytest
import torch
import torchvision

from selfsup.backbones import build_backbone
from selfsup.backbones.pretrained import imagenet_normalization, load_initial_weights
from selfsup.utils.errors import SelfSupError

RESNET18_FILE = "resnet18-f37072fd.pth"  # the name torchvision's DEFAULT weights are cached under


@pytest.fixture
def resnet18_file(tmp_path):
    """A torchvision ResNet-18's state dict, classifier included, as ``torch.save`` writes it."""
    torch.manual_seed(1)
    model = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_a_torchvision_file_loads_strictly_into_the_backbone(resnet18_file, tmp_path):
    path, state = resnet18_file
    backbone = build_backbone("resnet18", 3, "imagenet", 64)
    load_initial_weights(backbone, str(path))
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(state) - {"fc.weight", "fc.bias"}  # the classifier is dropped
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    broken = {**state, "layer9.weight": torch.zeros(1)}
    broken.pop("layer4.1.bn2.running_var")
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(SelfSupError, match="missing layer4.1.bn2.running_var; unexpected layer9.weight"):
        load_initial_weights(build_backbone("resnet18", 3, "imagenet", 64), str(tmp_path / "broken.pth"))


def test_wrapped_and_safetensors_files_load_alike(resnet18_file, tmp_path):
    from safetensors.torch import save_file

    _, state = resnet18_file
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
    for name in ("wrapped.pt", "weights.safetensors"):
        backbone = build_backbone("resnet18", 3, "imagenet", 64)
        load_initial_weights(backbone, str(tmp_path / name))
        assert torch.equal(backbone.model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SelfSupError, match="cannot read weights from"):
        load_initial_weights(build_backbone("resnet18", 3, "imagenet", 64), str(tmp_path / "junk.pth"))


def test_one_channel_sums_the_rgb_kernels_so_gray_images_read_alike(resnet18_file, caplog):
    path, state = resnet18_file
    rgb, gray = build_backbone("resnet18", 3, "imagenet", 64), build_backbone("resnet18", 1, "imagenet", 64)
    load_initial_weights(rgb, str(path))
    with caplog.at_level(logging.INFO, logger="selfsup"):
        load_initial_weights(gray, str(path))
    assert "RGB kernels are summed" in caplog.text
    assert torch.equal(gray.model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    image = torch.rand(2, 1, 64, 64)
    rgb.eval(), gray.eval()
    with torch.no_grad():  # a gray image is R = G = B: the summed kernel gives the RGB model's response
        torch.testing.assert_close(gray(image), rgb(image.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-5)


def test_the_small_stem_is_new_and_the_rest_is_loaded(resnet18_file, caplog):
    path, state = resnet18_file
    backbone = build_backbone("resnet18", 3, "small", 32)
    fresh_stem = backbone.model.conv1.weight.clone()
    with caplog.at_level(logging.INFO, logger="selfsup"):
        load_initial_weights(backbone, str(path))
    assert "small-image stem's first convolution (conv1) is new" in caplog.text
    assert torch.equal(backbone.model.conv1.weight, fresh_stem) and backbone.model.conv1.kernel_size == (3, 3)
    assert torch.equal(backbone.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_imagenet_weights_come_from_the_torch_cache(resnet18_file, tmp_path, monkeypatch):
    path, state = resnet18_file
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / RESNET18_FILE).write_bytes(path.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backbone = build_backbone("resnet18", 3, "imagenet", 64)
    load_initial_weights(backbone, "imagenet")
    assert torch.equal(backbone.model.layer2[1].conv2.weight, state["layer2.1.conv2.weight"])
    assert imagenet_normalization(1).mean == [pytest.approx((0.485 + 0.456 + 0.406) / 3)]


def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def test_imagenet_offline_is_one_line_naming_init_path(tmp_path, monkeypatch):
    from conftest import run_cli

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    done = run_cli("train", "--init", "imagenet", "--labeled", "digits", "--out", str(tmp_path / "model"))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--init imagenet" in lines[0] and "--init PATH" in lines[0]
    assert not (tmp_path / "model").exists()  # nothing written before the weights were had
