"""Data-parallel training equals one process on the whole batch (2 CPU processes, gloo, torchrun)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import distributed_worker as worker
from selfsup.utils.distributed import DistContext
from selfsup.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "utils")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("ddp")
    done = _torchrun([str(ROOT / "tests" / "utils" / "distributed_worker.py"), str(tmp_path / "ranks.pt")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(tmp_path / "ranks.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(worker.SMALL))
def test_two_processes_equal_one_process_on_the_whole_batch(two_process_results, name):
    """Same losses at every step and same weights and buffers (queues included) after 4 steps, to 1e-5:
    the global-batch negatives reach every rank and their gradients flow back (simclr, moco_v3, nnclr,
    triplet), queues hold every rank's keys (moco_v2, nnclr, swav), batch statistics and Sinkhorn
    codes are the global batch's (barlow_twins, vicreg, swav)."""
    torch.set_num_threads(1)
    single = worker.train(name, DistContext(), torch.device("cpu"))
    ranks = two_process_results[name]
    assert ranks["losses"] == pytest.approx(single["losses"], abs=1e-5)
    assert len(set(single["losses"])) > 1  # it trained
    for key, value in single["state"].items():
        torch.testing.assert_close(ranks["state"][key], value, atol=1e-5, rtol=1e-5, msg=f"{name}: {key}")


def test_pool_features_are_shared_out_and_equal_rank_0s_extraction(two_process_results):
    """DeepCluster's per-epoch features: each of 2 ranks extracts half the pool (shares of unequal
    length, one image unreadable) with rank 0's batch-norm statistics, and every rank gets rank 0's
    whole-pool extraction, in pool order."""
    torch.set_num_threads(1)
    single = worker.pool_features(DistContext(), torch.device("cpu"))  # rank 0's statistics, the whole pool
    shared = two_process_results["pool_features"]
    assert shared["positions"].tolist() == single["positions"].tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    torch.testing.assert_close(shared["features"], single["features"], atol=1e-6, rtol=1e-6)


def _pretrain(out: Path, *extra: str, kill_at: int | None = None, devices: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # torchrun's per-process setting, for any N
    if kill_at:
        env["SELFSUP_KILL_AT_STEP"] = str(kill_at)
    args = ["--devices", str(devices), "--data", "digits", "--backbone", "small-convnet", "--steps", "12", "--batch-size", "64",
            "--checkpoint-every", "5", "--device", "cpu", "--quiet", "--json", "--out", str(out)]
    return subprocess.run([sys.executable, "-m", "selfsup", "pretrain", *args, *extra], env=env, capture_output=True,
                          text=True, timeout=600)


def test_pretrain_on_two_processes_resumes_to_the_same_weights(tmp_path):
    """`selfsup pretrain --devices 2` runs torchrun: rank 0 alone writes the run (one metrics row per
    logged step, checkpoints, the encoder); a run killed mid-way and resumed on 2 processes ends with
    the weights of the uninterrupted one."""
    from safetensors.torch import load_file

    whole = _pretrain(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    result = json.loads(whole.stdout.strip().splitlines()[-1])
    assert result["processes"] == 2 and result["batch_size"] == 64 and result["steps"] == 12
    assert whole.stdout.count('"processes"') == 1  # one report, from rank 0
    steps = [line.split(",")[0] for line in (tmp_path / "whole" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "12"]

    killed = _pretrain(tmp_path / "resumed", kill_at=7)
    assert killed.returncode != 0 and (tmp_path / "resumed" / "checkpoints" / "step-000005.safetensors").exists()
    resumed = _pretrain(tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(tmp_path / "whole" / "encoder.safetensors"), load_file(tmp_path / "resumed" / "encoder.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-6, msg=key)


def test_sigterm_stops_every_rank_at_one_step_and_the_resumed_run_ends_equal(tmp_path):
    """SIGTERM to `selfsup pretrain --devices 2` (a scheduler's preemption notice) reaches both workers
    through torchrun; they agree on the step to stop at, rank 0 writes its checkpoint, the launcher exits
    143 with one line, and the run resumed on 2 processes ends with the uninterrupted run's weights."""
    import signal
    import time

    from safetensors.torch import load_file

    steps = ("--steps", "60")
    whole = _pretrain(tmp_path / "whole", *steps)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "stopped"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--devices", "2", "--data", "digits", "--backbone", "small-convnet", "--steps", "60", "--batch-size", "64",
            "--checkpoint-every", "5", "--device", "cpu", "--quiet", "--json", "--out", str(out)]
    launcher = subprocess.Popen([sys.executable, "-m", "selfsup", "pretrain", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while not pointer.exists() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=300)
    step = json.loads(pointer.read_text())["step"]
    assert launcher.returncode == 143, stderr[-3000:]
    assert 5 <= step < 60 and "Traceback" not in stderr
    assert stderr.count(f"selfsup: stopped at step {step} by SIGTERM; continue with --resume") == 1  # rank 0 only
    resumed = _pretrain(out, *steps, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(tmp_path / "whole" / "encoder.safetensors"), load_file(out / "encoder.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-6, msg=key)


def test_deepcluster_shares_the_feature_extraction_and_clusters_as_one_process(tmp_path):
    """Each of 2 ranks extracts half the pool for DeepCluster's k-means, and the gathered features
    give the pseudo-labels one process gives: epoch 0's, clustered from the same initial weights."""
    from safetensors.torch import load_file

    two = _pretrain(tmp_path / "two", "--method", "deepcluster")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _pretrain(tmp_path / "one", "--method", "deepcluster", devices=1)
    assert one.returncode == 0, one.stderr[-3000:]
    labels = [load_file(tmp_path / run / "checkpoints" / "step-000012.safetensors")["model/pseudo_labels"]
              for run in ("two", "one")]
    assert (labels[0] >= 0).all() and len(labels[0].unique()) > 5
    # Equal here (one thread each); the margin allows for float rounding that differs with the batch an
    # image is extracted in and moves an image on a cluster border. Misplaced rows would agree on ≈ 1/k.
    assert (labels[0] == labels[1]).float().mean() > 0.99


def test_devices_shorthand_checks_before_launching(tmp_path, capsys, monkeypatch):
    """Bad input fails in the launcher with its usual exit code, before any worker starts."""
    from selfsup.cli import main, torchrun_command

    assert main(["pretrain", "--devices", "2", "--data", "digits", "--method", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    command = torchrun_command(["--devices", "2", "--data", "x", "--nodes=1", "--steps", "3"], 2, 1)
    assert command[1:] == ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m", "selfsup",
                           "--data", "x", "--steps", "3"]
    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT, NODE_RANK"):
        torchrun_command(["--nodes", "2"], 4, 2)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("NODE_RANK", "1")
    assert torchrun_command(["--nodes", "2", "--steps", "3"], 4, 2)[3:] == [
        "--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port",
        "29500", "-m", "selfsup", "--steps", "3"]
