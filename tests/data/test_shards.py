"""Sharded tar pools (WebDataset's format): listing, grouping, per-rank epochs, resume, training."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import cifar_members
from selfsup.data.images import spec_from_shape
from selfsup.data.shards import ShardedPool, expand_braces, is_shard_spec, list_shards, open_shard, samples
from selfsup.utils.errors import SelfSupError

ROOT = Path(__file__).resolve().parents[2]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    """4 shards of 20 real CIFAR-10 JPEGs each, with .cls labels, as WebDataset writes them."""
    root = tmp_path_factory.mktemp("shards")
    members = cifar_members(8)  # 80 images
    classes = sorted({name.split("/")[1] for name, _ in members})
    for s in range(4):
        with tarfile.open(root / f"pool-{s:02d}.tar", "w") as tar:
            for i in range(20 * s, 20 * (s + 1)):
                name, data = members[i]
                _add(tar, f"{i:06d}.jpg", data)
                _add(tar, f"{i:06d}.cls", str(classes.index(name.split("/")[1])).encode())
    return root


def test_brace_patterns_expand_like_webdataset():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}-{8..10}") == ["x-8", "x-9", "x-10", "y-8", "y-9", "y-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_members_group_into_samples_by_key(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name in ("d/001.jpg", "d/001.cls", "d/002.seg.png", "d/002.json", "e.jpg"):
            _add(tar, name, name.encode())
    got = [(key, sorted(fields)) for key, fields in samples(open_shard(str(tmp_path / "s.tar")), "s.tar")]
    assert got == [("d/001", ["cls", "jpg"]), ("d/002", ["json", "seg.png"]), ("e", ["jpg"])]


def test_shards_are_listed_counted_and_indexed(shard_dir, tmp_path):
    pattern = str(shard_dir / "pool-{00..03}.tar")
    assert is_shard_spec(pattern) and is_shard_spec(str(shard_dir)) and not is_shard_spec(str(tmp_path))
    shards = list_shards(pattern)
    assert [s.samples for s in shards] == [20] * 4 and [s.first for s in shards] == [0, 20, 40, 60]
    assert [s.url for s in list_shards(str(shard_dir))] == [s.url for s in shards]
    index = tmp_path / "pool.json"
    index.write_text(json.dumps({"shardlist": [{"url": str(shard_dir / "pool-01.tar"), "nsamples": 20},
                                               {"url": "https://example.org/pool-02.tar", "nsamples": 20}]}))
    assert [(s.url.split("/")[-1], s.first) for s in list_shards(str(index))] == [("pool-01.tar", 0), ("pool-02.tar", 20)]
    with pytest.raises(SelfSupError, match="need an index"):
        list_shards("https://example.org/pool-{0..3}.tar")
    with pytest.raises(SelfSupError, match="shard not found"):
        list_shards(str(shard_dir / "pool-{00..04}.tar"))


def test_shards_stream_over_http_and_from_a_pipe_through_an_index(shard_dir, tmp_path):
    """Remote shards (a local HTTP server here) and pipe: commands stream like local files."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shard_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        index = tmp_path / "remote.json"
        index.write_text(json.dumps({"shardlist": [{"url": f"{url}/pool-00.tar", "nsamples": 20},
                                                   {"url": f"pipe:cat {shard_dir / 'pool-01.tar'}", "nsamples": 20}]}))
        assert is_shard_spec(str(index))
        pool = ShardedPool(str(index), shuffle_buffer=8)
        pool.spec = spec_from_shape(pool.first_shape())
        seen = torch.cat([i for i, _ in pool.epoch_batches(0, 0, 8, 5, 0, 0, 1, 0)])
        assert sorted(seen.tolist()) == list(range(40))  # both shards read once, each sample once
    finally:
        server.shutdown()


def _pool(shard_dir: Path) -> ShardedPool:
    pool = ShardedPool(str(shard_dir / "pool-{00..03}.tar"), shuffle_buffer=16)
    pool.spec = spec_from_shape(pool.first_shape())
    return pool


def test_rank_epochs_are_disjoint_fixed_by_seed_and_resume_mid_epoch(shard_dir):
    """Two ranks read disjoint shards and yield exactly their steps; the same seed gives the same
    batches, another epoch another order; starting at step 3 (two workers) gives the tail of the epoch."""
    pool = _pool(shard_dir)
    assert len(pool) == 80 and pool.spec.image_size == 32
    ranks = [list(pool.epoch_batches(0, 7, 8, 5, 0, rank, 2, 0)) for rank in (0, 1)]
    assert all(len(r) == 5 and all(x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 for _, x in r) for r in ranks)
    seen = [torch.cat([i for i, _ in r]) for r in ranks]
    shards_of = [set((s // 20).tolist()) for s in seen]
    assert len(shards_of[0]) == len(shards_of[1]) == 2 and not shards_of[0] & shards_of[1]
    for r in (0, 1):  # 5 batches of 8 are exactly its two shards' 40 samples, each once
        assert sorted(seen[r].tolist()) == [i for s in sorted(shards_of[r]) for i in range(20 * s, 20 * s + 20)]
    again = list(pool.epoch_batches(0, 7, 8, 5, 0, 0, 2, 0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ranks[0], again))
    assert not torch.equal(torch.cat([i for i, _ in pool.epoch_batches(1, 7, 8, 5, 0, 0, 2, 0)]), seen[0])
    whole = list(pool.epoch_batches(0, 7, 8, 5, 0, 0, 1, 2))
    tail = list(pool.epoch_batches(0, 7, 8, 5, 3, 0, 1, 2))
    assert len(whole) == 5 and len(tail) == 2
    for (i, x), (j, y) in zip(whole[3:], tail):
        assert torch.equal(i, j) and torch.equal(x, y)


def test_a_bad_sample_is_skipped_and_a_truncated_shard_is_named(shard_dir, tmp_path, caplog):
    good = (shard_dir / "pool-00.tar").read_bytes()
    with tarfile.open(tmp_path / "pool-0.tar", "w") as tar:
        with tarfile.open(shard_dir / "pool-00.tar") as source:
            for member in source:
                _add(tar, member.name, b"not a jpeg" if member.name == "000003.jpg" else source.extractfile(member).read())
    (tmp_path / "pool-1.tar").write_bytes(good[: len(good) // 2 + 700])  # cut inside a member
    pool = ShardedPool(str(tmp_path / "pool-{0..0}.tar"), shuffle_buffer=4)
    pool.spec = spec_from_shape(pool.first_shape())
    indices = torch.cat([i for i, _ in pool.epoch_batches(0, 0, 4, 5, 0, 0, 1, 0)])
    assert 3 not in indices.tolist() and "000003" in caplog.text
    with pytest.raises(SelfSupError, match="truncated shard .*pool-1.tar"):
        list_shards(str(tmp_path / "pool-{1..1}.tar"))
    with pytest.raises(SelfSupError, match="corrupt or truncated shard .*pool-1.tar"):
        list(samples(open_shard(str(tmp_path / "pool-1.tar")), str(tmp_path / "pool-1.tar")))


def _pretrain(shard_dir: Path, out: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if kill_at:
        env["SELFSUP_KILL_AT_STEP"] = str(kill_at)
    args = ["--data", str(shard_dir / "pool-{00..03}.tar"), "--backbone", "small-convnet", "--steps", "8",
            "--batch-size", "16", "--checkpoint-every", "2", "--num-workers", "2", "--quiet", "--json", "--out", str(out)]
    return subprocess.run([sys.executable, "-m", "selfsup", "pretrain", *args, *extra], env=env, capture_output=True,
                          text=True, timeout=600)


def test_pretraining_streams_shards_and_resumes_to_the_same_weights(shard_dir, tmp_path):
    whole = _pretrain(shard_dir, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    result = json.loads(whole.stdout.strip().splitlines()[-1])
    assert result["n_images"] == 80 and result["steps"] == 8 and "knn_top1" not in result
    assert _pretrain(shard_dir, tmp_path / "resumed", kill_at=5).returncode != 0
    resumed = _pretrain(shard_dir, tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(tmp_path / "whole" / "encoder.safetensors"), load_file(tmp_path / "resumed" / "encoder.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)
    refused = _pretrain(shard_dir, tmp_path / "dc", "--method", "deepcluster")
    assert refused.returncode == 2 and "random access" in refused.stderr
