import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from selfsup.utils.errors import ConfigError
from selfsup.views import VIEW_PRESETS, Normalization, Views
from selfsup.views import kernels as K
from selfsup.views import params as P


@pytest.fixture
def images():
    return torch.rand(6, 3, 32, 40, generator=torch.Generator().manual_seed(1))


def per_image(fn, images, *args):
    return torch.stack([fn(images[i], *[a[i] for a in args]) for i in range(len(images))])


def test_resized_crop_equals_torchvision(images):
    boxes = torch.tensor([[0, 0, 32, 40], [3, 5, 10, 17], [1, 2, 30, 3], [10, 10, 20, 25], [0, 0, 5, 5], [4, 7, 28, 33]])
    for size in (16, 32, 64):
        ref = torch.stack([TF.resized_crop(images[i], *boxes[i].tolist(), [size, size], antialias=True) for i in range(6)])
        torch.testing.assert_close(K.resized_crop(images, boxes, size), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,ours,theirs", [
    ("brightness", K.adjust_brightness, TF.adjust_brightness),
    ("contrast", K.adjust_contrast, TF.adjust_contrast),
    ("saturation", K.adjust_saturation, TF.adjust_saturation),
])
def test_color_kernels_equal_torchvision(images, name, ours, theirs):
    factors = torch.tensor([0.0, 0.5, 1.0, 1.3, 2.0, 0.7])
    ref = torch.stack([theirs(images[i], float(factors[i])) for i in range(6)])
    torch.testing.assert_close(ours(images, factors), ref, atol=1e-5, rtol=0)


def test_hue_equals_torchvision(images):
    factors = torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.3, 0.5])
    ref = torch.stack([TF.adjust_hue(images[i], float(factors[i])) for i in range(6)])
    torch.testing.assert_close(K.adjust_hue(images, factors), ref, atol=1e-5, rtol=0)


def test_grayscale_flip_solarize_equal_torchvision(images):
    torch.testing.assert_close(K.grayscale(images), TF.rgb_to_grayscale(images, 3), atol=1e-6, rtol=0)
    flip = torch.tensor([True, False, True, False, False, True])
    ref = torch.stack([TF.horizontal_flip(x) if f else x for x, f in zip(images, flip)])
    torch.testing.assert_close(K.hflip(images, flip), ref)
    ref = torch.stack([TF.solarize(x, 0.5) if f else x for x, f in zip(images, flip)])
    torch.testing.assert_close(K.solarize(images, flip), ref)


def test_gaussian_blur_equals_torchvision(images):
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.7])
    for k in (3, 5, 9):
        ref = torch.stack([TF.gaussian_blur(images[i], [k, k], [float(sigma[i])] * 2) for i in range(6)])
        torch.testing.assert_close(K.gaussian_blur(images, sigma, k), ref, atol=1e-5, rtol=0)


def test_color_jitter_order_per_image(images):
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    factors = torch.tensor([[1.2, 0.8, 1.3, 0.05]] * 6)
    order = P.random_orders(6, torch.Generator().manual_seed(3))
    apply = torch.tensor([True, True, False, True, True, True])
    out = K.color_jitter(images, factors, order, apply)
    for i in range(6):
        ref = images[i]
        if apply[i]:
            for j in order[i].tolist():
                ref = ops[j](ref, float(factors[i, j]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert len({tuple(o) for o in order.tolist()}) > 1  # the order really varies per image


def test_crop_boxes_valid_and_seeded():
    g = torch.Generator().manual_seed(0)
    boxes = P.crop_boxes(500, 32, 40, (0.08, 1.0), (3 / 4, 4 / 3), g)
    top, left, h, w = boxes.T
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= 32).all() and (left + w <= 40).all()
    area = (h * w).float() / (32 * 40)
    assert area.min() < 0.2 and area.max() > 0.8  # the whole scale range is used
    again = P.crop_boxes(500, 32, 40, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)


def test_views_are_seeded_and_differ_per_image():
    x = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    views = Views.preset("simclr-cifar", 32, Normalization([0.5] * 3, [0.25] * 3))
    a1, a2 = views(x, torch.Generator().manual_seed(5))
    b1, _ = views(x, torch.Generator().manual_seed(5))
    assert a1.shape == (8, 3, 32, 32) and torch.equal(a1, b1)
    assert not torch.allclose(a1, a2)


@pytest.mark.parametrize("preset", VIEW_PRESETS.names())
def test_every_preset_runs(preset):
    x = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    views = Views.preset(preset, 24, Normalization([0.5] * 3, [0.25] * 3))
    out = views(x, torch.Generator().manual_seed(0))
    sides = [round(24 * s.size_fraction) for s in views.settings]  # multi-crop's local crops are smaller
    assert all(v.shape == (4, 3, side, side) and torch.isfinite(v).all() for v, side in zip(out, sides))


def test_byol_preset_is_asymmetric():
    first, second = VIEW_PRESETS.get("byol")
    assert (first.blur_p, first.solarize_p, second.blur_p, second.solarize_p) == (1.0, 0.0, 0.1, 0.2)


def test_resized_crop_matches_on_many_random_boxes():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(64, 3, 32, 32, generator=g)
    boxes = P.crop_boxes(64, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), g)
    for size in (24, 32, 48):
        ref = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), [size, size], antialias=True) for i in range(64)])
        torch.testing.assert_close(K.resized_crop(x, boxes, size), ref, atol=1e-5, rtol=0)


def test_multi_crop_presets_and_local_crop_overrides():
    from selfsup.views import Normalization, Views

    norm = Normalization([0.5] * 3, [0.25] * 3)
    images = (torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    swav = Views.preset("swav", 32, norm)
    crops = swav(images, torch.Generator().manual_seed(0))
    assert (swav.n_global, swav.n_local) == (2, 6)
    assert [c.shape[-1] for c in crops] == [32, 32] + [round(32 * 96 / 224)] * 6  # SwAV's 224 / 96 ratio
    assert all(s.crop_scale == (0.05, 0.14) for s in swav.settings[2:])
    custom = Views.preset("simclr-cifar", 32, norm, local_crops=3, local_scale=(0.1, 0.3), local_size=0.5)
    assert (custom.n_global, custom.n_local) == (2, 3) and custom.settings[2].crop_scale == (0.1, 0.3)
    assert [c.shape[-1] for c in custom(images, torch.Generator())] == [32, 32, 16, 16, 16]
    assert Views.preset("dino", 32, norm, local_crops=0).n_local == 0


def test_noise_std_adds_gaussian_noise_last_and_leaves_the_preset_stream_alone():
    norm = Normalization([0.5], [0.25])
    images = torch.full((64, 1, 24, 24), 128, dtype=torch.uint8)
    plain = Views.preset("crop-flip", 16, norm)
    noisy = Views.preset("crop-flip", 16, norm, noise_std=0.1)
    clean = plain(images, torch.Generator().manual_seed(3), n=1)[0]
    with_noise = noisy(images, torch.Generator().manual_seed(3), n=1)[0]
    added = (with_noise - clean) * 0.25  # back to [0, 1] pixel units
    per_view = added.flatten(1).std(1)
    assert per_view.max() <= 0.1 * 1.3 and per_view.min() < 0.02 and per_view.max() > 0.07  # σ ~ U(0, 0.1)
    assert torch.equal(plain(images, torch.Generator().manual_seed(3), n=1)[0], clean)
    with pytest.raises(ConfigError):
        Views.preset("crop-flip", 16, norm, noise_std=2.0)
