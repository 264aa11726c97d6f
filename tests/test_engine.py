import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from selfsup.engine.optim import LARS, build_optimizer, param_groups
from selfsup.engine.schedule import warmup_cosine

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RUN = [sys.executable, "-m", "selfsup", "pretrain", "--data", "digits", "--backbone", "small-convnet",
       "--views", "small-gray", "--batch-size", "32", "--steps", "12", "--checkpoint-every", "3", "--quiet"]


def test_lars_step_matches_the_formula():
    w = torch.tensor([[3.0, 4.0]], requires_grad=True)  # ‖w‖ = 5
    b = torch.tensor([1.0], requires_grad=True)
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, momentum=0.9, trust_coefficient=0.01)
    w.grad, b.grad = torch.tensor([[1.0, 0.0]]), torch.tensor([2.0])
    opt.step()
    update = torch.tensor([[1.0, 0.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])  # g + λw
    trust = 0.01 * 5.0 / update.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * trust * update)
    torch.testing.assert_close(b.detach(), torch.tensor([0.0]))  # excluded: plain SGD step 1 - 0.5*2


def test_biases_and_norms_are_not_decayed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decayed, plain = param_groups(model, 1e-4)
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 4
    for name in ("sgd", "adamw", "lars"):
        assert build_optimizer(name, model, 0.1, 1e-4).param_groups[1]["weight_decay"] == 0.0


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, 100, 1.0, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(values[10:], values[11:])) and values[-1] < 0.001


def final_state(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "step-000012.safetensors"))


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b) and any(k.startswith("optim/") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("full") / "run"
    subprocess.run(RUN + ["--out", str(out)], env=ENV, check=True, capture_output=True)
    return final_state(out)


def test_resume_after_deterministic_kill_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    killed = subprocess.run(RUN + ["--out", str(out)], env={**ENV, "SELFSUP_KILL_AT_STEP": "7"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoints" / "step-000006.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(final_state(out), uninterrupted)
    steps = [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps), key=int)  # no step logged twice after the resume


def test_resume_after_real_sigkill_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = subprocess.Popen(RUN + ["--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not after finishing
    assert not (out / "checkpoints" / "step-000012.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(final_state(out), uninterrupted)
