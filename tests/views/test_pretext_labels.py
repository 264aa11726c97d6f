"""The classic pretext tasks' label generators and losses: pure, seeded, checked against their definitions."""
import math

import numpy as np
import pytest
import torch

from selfsup.losses import masked_mse, normalized_patch_mse, rebalanced_colour_loss
from selfsup.views.corrupt import (CORRUPTIONS, corrupt_batch, masking_noise, random_token_mask, region_masks,
                                   rotate_batch)
from selfsup.views.jigsaw import (NEIGHBOURS, drop_colour, jigsaw_tiles, min_hamming_distance, permutation_set,
                                  project_colour, relative_patch_grid, relative_patch_pairs, shuffle_tiles)
from selfsup.views.lab import ab_bins, lab_to_rgb, rebalancing_weights, rgb_to_lab, soft_encode


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinates(b: int, size: int) -> torch.Tensor:
    """B x 2 x size x size images whose pixels hold their own (row, column)."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([rows, cols]).float()[None].repeat(b, 1, 1, 1)


def test_rotating_back_by_the_inverse_angle_gives_the_original():
    x = torch.rand(3, 3, 8, 8, generator=gen())
    rotated, labels = rotate_batch(x)
    assert rotated.shape == (12, 3, 8, 8) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for i in range(12):
        back = torch.rot90(rotated[i], -int(labels[i]), dims=(-2, -1))
        torch.testing.assert_close(back, x[i % 3], rtol=0, atol=0)
    # 90° counter-clockwise: the top-right corner moves to the top-left
    torch.testing.assert_close(rotated[3][:, 0, 0], x[0][:, 0, -1])


def test_permutation_set_is_deterministic_distinct_and_far_apart():
    perms = permutation_set(100)
    assert perms.shape == (100, 9)
    assert (np.sort(perms, 1) == np.arange(9)).all()  # each row a permutation of 0..8
    assert len({tuple(p) for p in perms}) == 100
    assert min_hamming_distance(perms) >= 6  # the bar for 100 permutations
    assert np.array_equal(perms, permutation_set.__wrapped__(100))  # same set when generated again
    large = permutation_set(1000)
    assert len({tuple(p) for p in large}) == 1000 and min_hamming_distance(large) >= 5


def test_min_hamming_distance_by_hand():
    perms = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 1, 0]])
    assert min_hamming_distance(perms) == 2  # rows 0 and 1 differ in two places


def test_jigsaw_tiles_reassembled_by_the_inverse_permutation_give_the_original_grid():
    x = coordinates(4, 12)
    tiles = jigsaw_tiles(x, gen(), grid=3, tile_fraction=0.75)  # 4 x 9 x 2 x 3 x 3
    perms = torch.from_numpy(permutation_set(10))
    shuffled, labels = shuffle_tiles(tiles, perms, gen(1))
    for b in range(4):
        inverse = torch.argsort(perms[labels[b]])
        torch.testing.assert_close(shuffled[b][inverse], tiles[b], rtol=0, atol=0)
        for cell in range(9):  # every tile lies inside its own 4 x 4 cell of the 12 x 12 image
            top, left = tiles[b, cell, 0, 0, 0], tiles[b, cell, 1, 0, 0]
            assert top // 4 == cell // 3 and left // 4 == cell % 3
            assert (top + 2) // 4 == cell // 3 and (left + 2) // 4 == cell % 3


def test_relative_patch_label_says_where_the_neighbour_is():
    patch, gap, jitter = 5, 2, 1
    x = coordinates(64, 32)
    centre, neighbour, labels = relative_patch_pairs(x, gen(), patch, gap, jitter)
    assert centre.shape == (64, 2, patch, patch) and set(labels.tolist()) == set(range(8))
    step = patch + gap
    for b in range(64):
        d_row = neighbour[b, 0, 0, 0] - centre[b, 0, 0, 0]
        d_col = neighbour[b, 1, 0, 0] - centre[b, 1, 0, 0]
        expect_row, expect_col = NEIGHBOURS[int(labels[b])]
        assert abs(d_row - expect_row * step) <= 2 * jitter and abs(d_col - expect_col * step) <= 2 * jitter
        # never touching: the gap minus the jitter stays between the patches along the offset axes
        if expect_row:
            assert abs(d_row) >= patch + gap - 2 * jitter


def test_relative_patch_grid_holds_every_neighbour_at_its_label():
    from selfsup.methods.relative_patch import every_pair

    # Without gaps or jitter, the 9 patches of a view exactly 3 patches wide reassemble it.
    x = torch.rand(2, 3, 12, 12, generator=gen())
    grid = relative_patch_grid(x, gen(), 4, 0, 0)
    rows = [torch.cat([grid[:, 3 * r + c] for c in range(3)], dim=-1) for r in range(3)]
    torch.testing.assert_close(torch.cat(rows, dim=-2), x, rtol=0, atol=0)
    # With gaps and jitter, every pair's label says where its neighbour is, as for one random pair.
    patch, gap, jitter = 5, 2, 1
    grid = relative_patch_grid(coordinates(16, 32), gen(), patch, gap, jitter)
    centre, neighbour, labels = every_pair(grid)
    assert centre.shape == (16 * 8, 2, patch, patch) and labels.tolist() == list(range(8)) * 16
    for k in range(len(labels)):
        torch.testing.assert_close(centre[k], grid[k // 8, 4])
        expect = torch.tensor(NEIGHBOURS[int(labels[k])]) * (patch + gap)
        moved = neighbour[k, :, 0, 0] - centre[k, :, 0, 0]
        assert ((moved - expect).abs() <= 2 * jitter).all()


def test_colour_dropping_keeps_one_channel_and_projection_removes_green_magenta():
    x = torch.rand(16, 3, 6, 6, generator=gen())
    dropped = drop_colour(x, gen(1))
    kept = [(dropped[b] == x[b]).flatten(1).all(1) for b in range(16)]
    assert all(int(k.sum()) == 1 for k in kept)
    assert float((dropped - x).abs().max()) > 0
    projected = project_colour(x)
    axis = torch.tensor([-1.0, 2.0, -1.0]) / math.sqrt(6)
    torch.testing.assert_close(torch.einsum("bchw,c->bhw", projected, axis), torch.zeros(16, 6, 6), atol=1e-6, rtol=0)
    torch.testing.assert_close(projected.sum(1), x.sum(1), atol=1e-5, rtol=0)  # grey component untouched


def test_lab_round_trip_and_known_values():
    rgb = torch.rand(4, 3, 16, 16, generator=gen(), dtype=torch.float64)
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert float((back - rgb).abs().max()) < 1e-3
    # Reference values (CIE D65, as scikit-image and colour-science give them).
    red = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(red, torch.tensor([53.24, 80.09, 67.20], dtype=torch.float64), atol=0.02, rtol=0)
    white = rgb_to_lab(torch.ones(1, 3, 1, 1, dtype=torch.float64)).flatten()
    torch.testing.assert_close(white, torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=0.01, rtol=0)


def test_ab_bins_cover_the_gamut_like_the_paper():
    bins = ab_bins(10)
    assert 250 <= len(bins) <= 330  # Zhang et al. report Q = 313 in-gamut bins at grid size 10
    assert (bins.remainder(10) == 0).all()
    rgb = torch.rand(2, 3, 8, 8, generator=gen())
    ab = rgb_to_lab(rgb)[:, 1:]
    nearest = torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins).min(1).values
    assert float(nearest.max()) <= 5 * math.sqrt(2) + 1e-4  # every colour falls in a kept cell


def test_soft_encoding_is_five_gaussian_weighted_nearest_bins():
    bins = ab_bins(10)
    ab = torch.tensor([3.0, -7.0]).view(1, 2, 1, 1)
    z = soft_encode(ab, bins).flatten()
    assert int((z > 0).sum()) == 5 and float(z.sum()) == pytest.approx(1.0, abs=1e-6)
    d = torch.cdist(torch.tensor([[3.0, -7.0]]), bins).flatten()
    near = d.topk(5, largest=False).indices
    expected = torch.exp(-d[near] ** 2 / 50)
    torch.testing.assert_close(z[near], expected / expected.sum(), atol=1e-6, rtol=0)


def test_rebalancing_weights_by_hand_and_expectation_one():
    bins = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])  # far apart: the σ = 5 smoothing is the identity
    counts = torch.tensor([6.0, 3.0, 1.0])
    w = rebalancing_weights(counts, bins, lam=0.5).double()
    p = counts.double() / 10
    raw = 1 / (0.5 * p + 0.5 / 3)
    torch.testing.assert_close(w, raw / (p * raw).sum(), atol=1e-6, rtol=0)
    assert float((p * w).sum()) == pytest.approx(1.0)
    assert w[2] > w[1] > w[0]  # rare colours weigh more


def test_rebalanced_colour_loss_equals_a_loop_in_float64():
    torch.manual_seed(0)
    b, q, h, w = 2, 5, 3, 3
    logits = torch.randn(b, q, h, w, dtype=torch.float64)
    target = torch.softmax(torch.randn(b, q, h, w, dtype=torch.float64) * 3, 1)
    weights = torch.rand(q, dtype=torch.float64) + 0.5
    total = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                logp = [logits[i, k, y, x] - torch.logsumexp(logits[i, :, y, x], 0) for k in range(q)]
                star = int(torch.argmax(target[i, :, y, x]))
                total += -float(weights[star]) * sum(float(target[i, k, y, x] * logp[k]) for k in range(q))
    got = rebalanced_colour_loss(logits, target, weights)
    assert float(got) == pytest.approx(total / (b * h * w), abs=1e-6)


def test_masked_mse_counts_only_the_hidden_region():
    pred, target = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    target[:, :, :2] = 3.0  # error 9 on the top half, 1 on the bottom
    top = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    top[:, :, :2] = True
    assert float(masked_mse(pred, target, top)) == pytest.approx(9.0)
    assert float(masked_mse(pred, target, ~top)) == pytest.approx(1.0)
    assert float(masked_mse(pred, target)) == pytest.approx(5.0)


def test_normalized_patch_mse_equals_a_loop_in_float64():
    torch.manual_seed(1)
    pred, patches = torch.randn(2, 6, 12, dtype=torch.float64), torch.randn(2, 6, 12, dtype=torch.float64) * 3 + 1
    hidden = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    errors = []
    for i in range(2):
        for n in range(6):
            if hidden[i, n]:
                t = patches[i, n]
                t = (t - t.mean()) / math.sqrt(float(t.var()) + 1e-6)  # unbiased variance, as the paper's code
                errors.append(float(((pred[i, n] - t) ** 2).mean()))
    assert float(normalized_patch_mse(pred, patches, hidden)) == pytest.approx(np.mean(errors), abs=1e-6)
    raw = float(((pred - patches) ** 2).mean(-1)[hidden].mean())
    assert float(normalized_patch_mse(pred, patches, hidden, normalize=False)) == pytest.approx(raw, abs=1e-6)


def test_mae_masking_keeps_a_quarter_and_restore_inverts_the_shuffle():
    shuffle, restore = random_token_mask(4, 64, 16, gen())
    tokens = torch.arange(64).repeat(4, 1)
    shuffled = tokens.gather(1, shuffle)
    torch.testing.assert_close(shuffled.gather(1, restore), tokens)
    hidden = restore >= 16  # what MAE scores
    assert (hidden.sum(1) == 48).all()
    assert not torch.equal(shuffle[0], shuffle[1])  # per-sample masks


def test_patchify_round_trip():
    from selfsup.methods.mae import patchify, unpatchify

    x = torch.rand(2, 3, 8, 8, generator=gen())
    patches = patchify(x, 4)
    assert patches.shape == (2, 4, 48)
    torch.testing.assert_close(patches[0, 1], x[0, :, :4, 4:].permute(1, 2, 0).flatten())  # top-right patch
    torch.testing.assert_close(unpatchify(patches, 4, 3), x)


def test_region_masks_central_and_random():
    central = region_masks(3, 8, 0.5, "central", gen())
    assert central.shape == (3, 1, 8, 8) and central[:, 0, 2:6, 2:6].all() and int(central.sum()) == 3 * 16
    random = region_masks(50, 8, 0.5, "random", gen())
    assert (random.sum((1, 2, 3)) == 16).all() and len({tuple(m.nonzero()[0].tolist()) for m in random}) > 1


def test_masking_noise_and_corruptions():
    x = torch.rand(64, 3, 16, 16, generator=gen()) * 0.9 + 0.05
    masked = masking_noise(x, 0.25, gen(1))
    zero = (masked == 0).all(1)
    assert 0.2 < float(zero.float().mean()) < 0.3 and torch.equal(masked[:, :, ~zero[0]][0], x[:, :, ~zero[0]][0])
    out, labels = corrupt_batch(x, tuple(CORRUPTIONS), gen(2))
    assert set(labels.tolist()) == set(range(len(CORRUPTIONS)))
    for i, y in enumerate(labels.tolist()):
        name = list(CORRUPTIONS)[y]
        if name == "none":
            assert torch.equal(out[i], x[i])
        elif name == "grayscale":
            assert torch.allclose(out[i][0], out[i][1]) and torch.allclose(out[i][1], out[i][2])
        else:
            assert not torch.equal(out[i], x[i])
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_batch(x, ("none", "fog"), gen())


def test_corruption_severity_moves_each_image_part_way_to_its_full_corruption():
    """A fixed severity s gives x + s·(c(x) − x) exactly (same labels and noise as s = 1); a range
    gives each image a strength inside it, along the straight line from x to c(x)."""
    x = torch.rand(48, 3, 16, 16, generator=gen()) * 0.9 + 0.05
    names = tuple(CORRUPTIONS)
    full, labels = corrupt_batch(x, names, gen(3))
    half, half_labels = corrupt_batch(x, names, gen(3), severity=(0.5, 0.5))
    assert torch.equal(labels, half_labels)
    torch.testing.assert_close(half, x + 0.5 * (full - x))
    out, labels = corrupt_batch(x, names, gen(4), severity=(0.2, 0.8))
    for i, y in enumerate(labels.tolist()):
        name = names[y]
        if name in ("none", "noise"):  # nothing to move / noise drawn afresh
            continue
        target = CORRUPTIONS[name](x[i:i + 1], gen())[0] - x[i]
        strength = float((out[i] - x[i]).flatten() @ target.flatten() / target.flatten().square().sum())
        assert 0.2 - 1e-4 <= strength <= 0.8 + 1e-4
        torch.testing.assert_close(out[i] - x[i], strength * target, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="severity"):
        corrupt_batch(x, names, gen(), severity=(0.0, 1.0))
