import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from PIL import Image

import selfsup
from selfsup.backbones import LayerFeatures, PatchGridFeatures, build_backbone, list_backbones
from selfsup.backbones.io import save_encoder
from selfsup.utils.errors import ConfigError
from selfsup.views import Normalization


def test_resnet18_small_stem_and_feature_dim():
    bb = build_backbone("resnet18", 3, "auto", 32)
    assert bb.spec.stem == "small" and bb.feature_dim == 512
    assert bb.model.conv1.kernel_size == (3, 3) and bb.model.conv1.stride == (1, 1)
    assert isinstance(bb.model.maxpool, nn.Identity)
    assert bb(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert build_backbone("resnet18", 3, "auto", 224).spec.stem == "imagenet"


def test_weights_load_into_torchvision_model_strictly():
    bb = build_backbone("resnet18", 1, "small", 32)
    reference = torchvision.models.resnet18()
    reference.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    reference.maxpool, reference.fc = nn.Identity(), nn.Identity()
    reference.load_state_dict(bb.model.state_dict(), strict=True)
    stock = build_backbone("resnet50", 3, "imagenet", 224)
    plain = torchvision.models.resnet50()
    plain.fc = nn.Identity()
    plain.load_state_dict(stock.model.state_dict(), strict=True)


def test_layer_features_are_the_inner_modules_output_averaged_over_space():
    torch.manual_seed(0)
    bb = build_backbone("resnet18", 3, "imagenet", 32).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        # The stock forward, stopped after layer3 by hand.
        m = bb.model
        by_hand = m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))).mean(dim=(2, 3))
        at_layer3 = LayerFeatures(bb, "layer3", 32)
        torch.testing.assert_close(at_layer3(x), by_hand)
        assert at_layer3.feature_dim == 256
        # layer4 averaged over space is what the global pool gives: the backbone's own features.
        torch.testing.assert_close(LayerFeatures(bb, "layer4", 32)(x), bb(x))
    with pytest.raises(ConfigError, match="no module 'layer9'.*layer3, layer4"):
        LayerFeatures(bb, "layer9", 32)


def test_patch_grid_features_average_each_cells_own_features():
    torch.manual_seed(0)
    bb = build_backbone("resnet18", 3, "imagenet", 32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # 32 px into 3 x 3 cells of 10 px: the centre 30 px (offset 1), cell (i, j) at rows 1+10i.., cols 1+10j..
        cells = [bb(x[:, :, 1 + 10 * i:11 + 10 * i, 1 + 10 * j:11 + 10 * j]) for i in range(3) for j in range(3)]
        grid = PatchGridFeatures(bb, 3, 32)
        torch.testing.assert_close(grid(x), torch.stack(cells).mean(0))
        assert grid.feature_dim == 512 and grid.cell == 10
        # One cell is the whole image; an inner layer composes (cells read at layer3).
        torch.testing.assert_close(PatchGridFeatures(bb, 1, 32)(x), bb(x))
        at_layer3 = LayerFeatures(bb, "layer3", 32)
        cells3 = [at_layer3(x[:, :, 1 + 10 * i:11 + 10 * i, 1 + 10 * j:11 + 10 * j]) for i in range(3) for j in range(3)]
        torch.testing.assert_close(PatchGridFeatures(at_layer3, 3, 32)(x), torch.stack(cells3).mean(0))
        # Swapping two cells' contents leaves the mean unchanged; changing one cell changes it.
        swapped = x.clone()
        swapped[:, :, 1:11, 1:11], swapped[:, :, 21:31, 21:31] = x[:, :, 21:31, 21:31], x[:, :, 1:11, 1:11]
        torch.testing.assert_close(grid(swapped), grid(x))
        assert not torch.allclose(PatchGridFeatures(bb, 2, 32)(swapped), PatchGridFeatures(bb, 2, 32)(x))
    with pytest.raises(ConfigError, match="patch grid 20"):
        PatchGridFeatures(bb, 20, 32)


def test_timm_backbone_by_name():
    timm = pytest.importorskip("timm")
    bb = build_backbone("timm:resnet10t", 3, "small", 32)
    assert bb(torch.randn(2, 3, 32, 32)).shape == (2, bb.feature_dim)
    ref = timm.create_model("resnet10t", num_classes=0)
    assert set(ref.state_dict()) == set(bb.model.state_dict())


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_backbone("resnet1000")
    assert "resnet18" in list_backbones() and "small-convnet" in list_backbones()


def test_encoder_round_trip_and_preprocess(tmp_path):
    bb = build_backbone("small-convnet", 3, "auto", 32).eval()
    norm = Normalization([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    save_encoder(tmp_path, bb, norm, 32, 32, {"method": "simclr"})
    encoder, preprocess = selfsup.load_encoder(tmp_path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    x = preprocess(image)
    assert x.shape == (3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x[None]), bb(x[None]))
