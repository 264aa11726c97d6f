"""3D volumes: reading .npy and NIfTI, per-volume normalization, 3D views, the Rubik's cube and 3D
rotation label generators with their exact inverses, and the volume methods through the registry and
the CLI (issue 10)."""
import json

import numpy as np
import pytest
import torch
from conftest import assert_method_trains

from selfsup.methods.base import method_defaults
from selfsup.backbones import build_backbone
from selfsup.cli import main
from selfsup.data.sources import open_source
from selfsup.data.synthetic import SHAPES, make_procedural_volumes, procedural_volume
from selfsup.data.volume import VolumePool, VolumeSpec, normalize_volume, probe_volume_spec, read_volume, write_nifti
from selfsup.methods import METHODS
from selfsup.views import Normalization, VolumeViews
from selfsup.views.cubes import ROTATIONS_3D, cut_cubes, rotate_3d, rotate_batch_3d, rubik_restore, rubik_shuffle
from selfsup.views.jigsaw import min_hamming_distance, permutation_set
from selfsup.views.volume import VolumeViewSettings

VOLUME_METHODS = [n for n in METHODS.names() if METHODS.get(n).modality == "volume"]
NORM = Normalization([0.3], [0.2])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Ellipsoids, tubes and blobs as .npy files: 3 shapes x 4 train and 2 test volumes of 16³."""
    return make_procedural_volumes(tmp_path_factory.mktemp("vol") / "shapes", per_class=4, test_per_class=2, size=16)


def test_ten_rotations_are_distinct_and_undone_by_their_inverse():
    x = torch.randn(2, 1, 6, 6, 6)
    turned = [rotate_3d(x, k) for k in range(ROTATIONS_3D)]
    assert all(torch.equal(rotate_3d(t, k, inverse=True), x) for k, t in enumerate(turned))
    assert len({tuple(t.flatten().tolist()) for t in turned}) == ROTATIONS_3D
    labels = torch.tensor([3, 7])
    assert torch.equal(rotate_batch_3d(x, labels)[1], rotate_3d(x[1:], 7)[0])


def test_rubik_shuffle_and_turns_are_undone_exactly_by_the_inverse():
    cubes = cut_cubes(torch.randn(3, 1, 16, 16, 16), 2, gen())
    assert cubes.shape == (3, 8, 1, 7, 7, 7)
    perms = torch.from_numpy(permutation_set(10, items=8))[torch.tensor([0, 4, 9])]
    turns = torch.randint(0, 3, (3, 8), generator=gen(1))
    shuffled = rubik_shuffle(cubes, perms, turns)
    assert torch.equal(rubik_restore(shuffled, perms, turns), cubes)
    # position j holds cube perms[j], turned 180° about H (D and W reversed) when turns[j] == 1
    j = int((turns[1] == 1).nonzero()[0]) if (turns[1] == 1).any() else None
    if j is not None:
        assert torch.equal(shuffled[1, j], cubes[1, perms[1, j]].flip(1, 3))


def test_cubes_come_from_their_octants_with_a_gap():
    x = torch.arange(16 ** 3, dtype=torch.float32).reshape(1, 1, 16, 16, 16)
    cubes = cut_cubes(x, 4, gen())  # side 6 in octants of 8
    for k in range(8):
        corner = int(cubes[0, k, 0, 0, 0, 0])
        d, h, w = corner // 256, corner // 16 % 16, corner % 16
        assert (d >= 8) == bool(k & 4) and (h >= 8) == bool(k & 2) and (w >= 8) == bool(k & 1)
        assert d % 8 + 6 <= 8 and h % 8 + 6 <= 8 and w % 8 + 6 <= 8  # inside its octant


def test_rubik_permutation_set_keeps_classes_apart():
    perms = permutation_set(100, items=8)
    assert perms.shape == (100, 8) and len({tuple(p) for p in perms}) == 100
    assert min_hamming_distance(perms) >= 5


def test_volume_files_read_normalize_and_resample(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 20, (20, 24, 28)).astype(np.float32)
    volume[0, 0, 0] = 1e6  # one extreme voxel must not set the scale
    np.save(tmp_path / "a.npy", volume)
    write_nifti(tmp_path / "b.nii.gz", volume)
    from_npy = read_volume((tmp_path / "a.npy").read_bytes(), "a.npy")
    from_nifti = read_volume((tmp_path / "b.nii.gz").read_bytes(), "b.nii.gz")
    assert np.allclose(from_npy, from_nifti)
    x = normalize_volume(from_npy, 16)
    assert x.shape == (1, 16, 16, 16) and x.dtype == torch.uint8
    assert 100 < x.float().mean() < 155  # centred by its own percentiles, not squashed by the outlier
    assert normalize_volume(volume * 7 + 300, 16).float().sub(x.float()).abs().max() <= 1  # scanner scale removed


def test_unreadable_volumes_are_named_and_skipped(tmp_path, caplog):
    import logging

    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "good.npy", np.random.rand(8, 8, 8))
    np.save(tmp_path / "c" / "flat.npy", np.random.rand(8, 8))  # 2D: not a volume
    (tmp_path / "c" / "bad.nii.gz").write_bytes(b"not nifti")
    collection = open_source(str(tmp_path), "volume")["all"]
    with caplog.at_level(logging.WARNING, logger="selfsup"):
        pool = VolumePool(collection, VolumeSpec(size=8))
    assert len(pool) == 1 and pool.skipped == 2 and "flat.npy" in caplog.text and "bad.nii.gz" in caplog.text


def test_volume_arrays_load_as_n_1_s_s_s(tmp_path):
    np.savez(tmp_path / "v.npz", x=np.random.rand(4, 10, 12, 14), y=np.array([0, 1, 0, 1]))
    collection = open_source(str(tmp_path / "v.npz"), "volume")["all"]
    assert collection.describe() == "4 volumes from v.npz, 2 classes"
    pool = VolumePool(collection, probe_volume_spec(collection, 8))
    assert pool.array.shape == (4, 1, 8, 8, 8) and list(pool.labels) == [0, 1, 0, 1]


def test_volume_views_identity_flip_and_independence():
    x = torch.randint(0, 255, (3, 1, 12, 12, 12), dtype=torch.uint8)
    plain = VolumeViews([VolumeViewSettings(crop_scale=(1, 1), flip_p=0, jitter_p=0, noise_std=0)], 12,
                        Normalization([0.0], [1.0]))
    out = plain.one(x, plain.settings[0], gen())
    assert torch.allclose(out * 255, x.float(), atol=1e-3)  # a full crop resamples nothing
    flipped = VolumeViews([VolumeViewSettings(crop_scale=(1, 1), flip_p=1, jitter_p=0, noise_std=0)], 12,
                          Normalization([0.0], [1.0]))
    assert torch.allclose(flipped.one(x, flipped.settings[0], gen()) * 255, x.float().flip(2, 3, 4), atol=1e-3)
    views = VolumeViews.preset("volume-simclr", 8, NORM)
    a, b = views(x, gen())
    assert a.shape == (3, 1, 8, 8, 8) and not torch.allclose(a, b)


def test_procedural_shapes_differ_and_are_seeded():
    rng = np.random.default_rng(0)
    shapes = {s: procedural_volume(s, 16, rng) for s in SHAPES}
    again = procedural_volume("tube", 16, np.random.default_rng(0))
    assert again.shape == (16, 16, 16)
    # a tube fills less of the volume than an ellipsoid or a blob
    filled = {s: float((normalize_volume(v, 16).float() > 128).float().mean()) for s, v in shapes.items()}
    assert filled["tube"] < max(filled["ellipsoid"], filled["blob"])


def make_volume_method(name: str):
    torch.manual_seed(0)
    cls = METHODS.get(name)
    args = {k: (10 if k == "permutations" else v) for k, v in method_defaults(cls).items()}
    return cls(build_backbone("small-convnet3d", 1, "small", 16), VolumeViews.preset(cls.recipe.views, 16, NORM),
               **args)


@pytest.mark.parametrize("name", VOLUME_METHODS)
def test_volume_method_gradients_and_loss_falls_on_a_fixed_batch(name):
    method = make_volume_method(name)
    x = (torch.rand(6, 1, 16, 16, 16, generator=gen()) * 255).to(torch.uint8)
    assert_method_trains(method, x)


def test_volume_pretrain_eval_finetune_through_the_cli(volumes, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(volumes), "--method", "rubik_cube", "--method-arg", "permutations=10",
                 "--steps", "2", "--batch-size", "6", "--out", str(run), "--show-batch", str(tmp_path / "b.png"),
                 "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_images"] == 12 and "knn_top1" in result and (tmp_path / "b.png").stat().st_size > 0
    info = json.loads((run / "encoder.json").read_text())
    assert info["modality"] == "volume" and info["volume"]["size"] == 16 and info["backbone"]["in_channels"] == 1
    assert main(["eval", "linear", "--checkpoint", str(run), "--labeled", str(volumes), "--json", "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["n_train"] == 12 and scored["n_test"] == 6
    assert main(["finetune", "--checkpoint", str(run), "--labeled", str(volumes), "--labels-per-class", "1",
                 "--seeds", "1", "--steps", "2", "--batch-size", "3", "--json", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"][0]
    assert row["n_labels"] == 3 and 0 <= row["pretrained_accuracy"] <= 1
    assert main(["study", "--labeled", str(volumes), "--methods", "", "--checkpoint", f"rubik_cube={run}",
                 "--labels-per-class", "1", "--seeds", "1", "--evaluations", "scratch,linear",
                 "--finetune-steps", "2", "--quiet", "--json", "--out", str(tmp_path / "study")]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert {(r["method"], r["evaluation"]) for r in rows} == {("scratch", "scratch"), ("rubik_cube", "linear")}
