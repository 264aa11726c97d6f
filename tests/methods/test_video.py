"""Video: label generators, the PyAV decode path on real mp4 files, clip views, clip encoders, and
every video method through the registry and the CLI (issue 10)."""
import json
import logging

import numpy as np
import pytest
import torch
from conftest import assert_method_trains

from selfsup.methods.base import method_defaults
from selfsup.backbones import build_backbone
from selfsup.cli import main
from selfsup.data.sources import open_source
from selfsup.data.synthetic import make_moving_digits
from selfsup.data.video import ClipPool, ClipSpec, decode_clip, probe_clip_spec, write_video
from selfsup.utils.errors import SelfSupError
from selfsup.methods import METHODS
from selfsup.views import Normalization
from selfsup.views.clips import ClipViews
from selfsup.views.temporal import (between_triplets, disordered_permutations, is_monotonic, odd_one_out,
                                    order_tuples, take_frames)

pytest.importorskip("av")
VIDEO_METHODS = [n for n in METHODS.names() if METHODS.get(n).modality == "video"]
NORM = Normalization([0.5] * 3, [0.25] * 3)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Moving digits as real H.264 files: 6 motions x 3 train and 2 test clips of 24 frames."""
    return make_moving_digits(tmp_path_factory.mktemp("video") / "md", per_class=3, test_per_class=2, frames=24)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_order_tuples_label_is_temporal_order_either_way():
    index, labels = order_tuples(2000, 16, gen())
    assert torch.equal(is_monotonic(index), labels.bool())
    assert 0.45 < labels.float().mean() < 0.55
    backwards = (index[:, 0] > index[:, 2]) & labels.bool()
    assert 0.4 < backwards.sum() / labels.sum() < 0.6  # reversed tuples count as in order
    assert (index >= 0).all() and (index < 16).all()


def test_odd_one_out_has_exactly_one_disordered_element_at_the_label():
    index, odd = odd_one_out(500, 16, gen(), elements=6, length=3)
    ordered = is_monotonic(index)  # B x 6
    assert torch.equal((~ordered).sum(1), torch.ones(500, dtype=torch.long))
    assert torch.equal((~ordered).float().argmax(1), odd)
    assert len(disordered_permutations(3)) == 4 and len(disordered_permutations(4)) == 22


def test_frames_taken_by_a_permutation_are_restored_by_its_inverse():
    clips = torch.randint(0, 255, (4, 3, 9, 5, 5), dtype=torch.uint8)
    perm = torch.stack([torch.randperm(9, generator=gen(i)) for i in range(4)])
    shuffled = take_frames(clips, perm)
    assert torch.equal(take_frames(shuffled, perm.argsort(1)), clips)
    assert torch.equal(shuffled[1, :, 0], clips[1, :, perm[1, 0]])


def test_between_triplets_positive_iff_the_true_middle_frame():
    index, source, labels = between_triplets(1000, 16, gen())
    first, candidate, last = index.unbind(1)
    assert (last - first >= 2).all() and ((last - first) % 2 == 0).all()
    middle_of_own_clip = (candidate == (first + last) // 2) & (source == torch.arange(1000))
    assert torch.equal(middle_of_own_clip, labels.bool())
    negatives = ~labels.bool()
    same_clip = negatives & (source == torch.arange(1000))
    assert ((candidate[same_clip] < first[same_clip]) | (candidate[same_clip] > last[same_clip])).all()
    assert 0.3 < same_clip.sum() / negatives.sum() < 0.7  # half the negatives are from this very clip


def test_mp4_round_trip_through_pyav(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32]
    frames = np.stack([np.stack([128 + 60 * np.sin((xx + 2 * t) / 8), 128 + 60 * np.cos(yy / 8),
                                 np.full((32, 32), 60.0 + 20 * (t % 5))], -1) for t in range(12)]).round().astype(np.uint8)
    path = write_video(tmp_path / "a.mp4", frames)  # smooth colours moving right
    clip = decode_clip(path.read_bytes(), ClipSpec(3, frames=6, stride=2, size=32))
    assert clip.shape == (3, 6, 32, 32) and clip.dtype == torch.uint8
    original = torch.from_numpy(frames).permute(3, 0, 1, 2).float()  # C x 12 x H x W
    assert (clip.float() - original[:, ::2]).abs().mean() < 4  # H.264 at crf 18, yuv420p: near-lossless
    errors = (clip.float()[:, :, None] - original[:, None]).abs().mean((0, 3, 4))  # 6 decoded x 12 original frames
    assert torch.equal(errors.argmin(1), torch.arange(0, 12, 2))  # every 2nd frame, in order
    # a shorter video than the clip repeats its last frame; a grey clip has one channel
    long = decode_clip(path.read_bytes(), ClipSpec(1, frames=10, stride=2, size=16))
    assert long.shape == (1, 10, 16, 16) and torch.equal(long[:, -1], long[:, -5])


def test_unreadable_videos_are_named_and_skipped_or_fatal_when_strict(videos, tmp_path, caplog):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(videos / "train" / "left", folder / "left")
    (folder / "left" / "broken.mp4").write_bytes(b"not a video")
    collection = open_source(str(folder), "video")["all"]
    assert collection.subset([0, 1]).describe().startswith("2 clips from")
    with caplog.at_level(logging.WARNING, logger="selfsup"):
        pool = ClipPool(collection, probe_clip_spec(collection, frames=4))
    assert len(pool) == 3 and pool.skipped == 1 and "broken.mp4" in caplog.text
    with pytest.raises(SelfSupError, match="unreadable video .*broken.mp4"):
        ClipPool(collection, probe_clip_spec(collection, frames=4), strict=True)


def test_clip_arrays_load_as_n_c_t_h_w(tmp_path):
    clips = np.random.default_rng(0).integers(0, 255, (5, 20, 20, 20, 3), dtype=np.uint8)  # N x T x H x W x C
    np.savez(tmp_path / "clips.npz", x=clips, y=np.arange(5) % 2)
    collection = open_source(str(tmp_path / "clips.npz"), "video")["all"]
    assert collection.describe().startswith("5 clips from")
    spec = probe_clip_spec(collection, frames=4, stride=2)
    pool = ClipPool(collection, spec)
    assert pool.array.shape == (5, 3, 4, 20, 20)
    # every 2nd frame (10 of them), the middle 4: frames 6, 8, 10, 12
    assert np.array_equal(pool.array[2, :, 1], clips[2, 8].transpose(2, 0, 1))


def test_clip_views_share_one_augmentation_across_frames():
    views = ClipViews.preset("simclr-cifar", 16, NORM)
    still = torch.randint(0, 255, (4, 3, 1, 24, 24), dtype=torch.uint8).expand(-1, -1, 6, -1, -1)
    out = views.one(still, views.settings[0], gen())
    assert out.shape == (4, 3, 6, 16, 16)
    assert torch.equal(out, out[:, :, :1].expand_as(out))  # a still clip stays still
    assert not torch.allclose(out[0, :, 0], out[1, :, 0])  # clips draw their own parameters


def test_clip_encoders_map_clips_to_features():
    clips = torch.randn(2, 1, 6, 16, 16)
    frames = build_backbone("frames:small-convnet", 1, "small", 16).eval()  # batch norm by running statistics
    assert frames(clips).shape == (2, frames.feature_dim)
    per_frame = frames.model.per_frame(clips)
    assert torch.allclose(frames(clips), per_frame.mean(1), atol=1e-6)
    assert torch.allclose(per_frame[1, 3], frames.model.frames(clips[1:2, :, 3])[0], atol=1e-5)
    r3d = build_backbone("r3d_18", 1, "small", 16)
    assert r3d(clips).shape == (2, 512) and r3d.model.stem[0].stride == (1, 1, 1)


def make_video_method(name: str):
    torch.manual_seed(0)
    cls = METHODS.get(name)
    backbone = build_backbone("frames:small-convnet", 3, "small", 16)
    return cls(backbone, ClipViews.preset(cls.recipe.views, 16, NORM), **method_defaults(cls))


def clip_batch(n=8, seed=0):
    return (torch.rand(n, 3, 12, 20, 20, generator=gen(seed)) * 255).to(torch.uint8)


@pytest.mark.parametrize("name", VIDEO_METHODS)
def test_video_method_gradients_and_loss_falls_on_a_fixed_batch(name):
    method = make_video_method(name)
    clips = clip_batch()
    assert_method_trains(method, clips)


def test_frame_tasks_refuse_a_3d_network():
    from selfsup.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="frame backbone"):
        METHODS.get("frame_order")(build_backbone("r3d_18", 3, "small", 16), ClipViews.preset("pretext", 16, NORM))


def test_video_pretrain_eval_finetune_through_the_cli(videos, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(videos), "--method", "frame_order", "--backbone", "frames:small-convnet",
                 "--steps", "3", "--batch-size", "6", "--frames", "8", "--out", str(run), "--show-batch",
                 str(tmp_path / "batch.png"), "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_images"] == 18 and "knn_top1" in result and (tmp_path / "batch.png").stat().st_size > 0
    info = json.loads((run / "encoder.json").read_text())
    assert info["modality"] == "video" and info["clip"]["frames"] == 8 and info["image_size"] == 32
    assert main(["eval", "knn", "--checkpoint", str(run), "--labeled", str(videos), "--json", "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["n_train"] == 18 and scored["n_test"] == 12
    # one label per class: nothing to validate a learning rate on, so one training each (kept fast)
    assert main(["finetune", "--checkpoint", str(run), "--labeled", str(videos), "--labels-per-class", "1",
                 "--seeds", "1", "--steps", "2", "--batch-size", "6", "--json", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"][0]
    assert row["n_labels"] == 6 and 0 <= row["pretrained_accuracy"] <= 1
    assert main(["study", "--labeled", str(videos), "--methods", "", "--checkpoint", f"frame_order={run}",
                 "--labels-per-class", "1", "--seeds", "1", "--evaluations", "scratch,finetune,knn",
                 "--finetune-steps", "2", "--quiet", "--json", "--out", str(tmp_path / "study")]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert {(r["method"], r["evaluation"]) for r in rows} == {("scratch", "scratch"), ("frame_order", "finetune"),
                                                              ("frame_order", "knn")}


def test_image_method_on_videos_and_video_method_on_images_are_clear_errors(videos, tmp_path, capsys):
    assert main(["pretrain", "--data", str(videos), "--method", "simclr", "--steps", "1", "--out",
                 str(tmp_path / "a"), "--quiet"]) == 2
    assert "holds videos" in capsys.readouterr().err
    images = tmp_path / "images" / "c"
    images.mkdir(parents=True)
    from PIL import Image
    Image.new("RGB", (8, 8)).save(images / "x.png")
    assert main(["pretrain", "--data", str(images.parent), "--method", "frame_order", "--steps", "1", "--out",
                 str(tmp_path / "b"), "--quiet"]) != 0
    assert "no video files" in capsys.readouterr().err
