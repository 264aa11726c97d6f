"""The one training loop: its step order, the non-finite stop, turns, and exact resume of fine-tuning."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from selfsup.engine.loop import Loop, StepResult, Turn, budget_steps
from selfsup.utils.errors import ConfigError, NonFiniteLossError

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _regression(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    return model, lambda step, batch, logging, player: StepResult(((model(x) - y) ** 2).mean())


def test_a_step_follows_the_schedule_then_descends_then_runs_the_hooks():
    model, forward = _regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []
    loop = Loop(optimizer, 3, lambda step: 0.1 / (step + 1), 0.1,
                after_step=[lambda step: seen.append((step, optimizer.param_groups[0]["lr"]))])
    reference, ref_forward = _regression()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=1.0)
    for step in range(3):  # the same steps written out by hand
        ref_opt.param_groups[0]["lr"] = 0.1 / (step + 1)
        ref_opt.zero_grad()
        ref_forward(step, None, False, None).loss.backward()
        ref_opt.step()
    last = loop.run(forward)
    assert seen == [(0, 0.1), (1, 0.05), (2, 0.1 / 3)]
    assert torch.equal(model.weight, reference.weight) and last.reported == last.loss.detach()


def test_a_non_finite_loss_stops_before_touching_the_weights(tmp_path):
    model = nn.Linear(2, 1)
    before = model.weight.detach().clone()
    loop = Loop(torch.optim.SGD(model.parameters(), lr=0.1), 5, lambda step: 0.1, 0.1, state=model,
                folder=tmp_path / "checkpoints", checkpoint_every=1)
    losses = iter([torch.tensor(1.0, requires_grad=True) * model.weight.sum(), torch.tensor(float("nan"))])
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 1; stopped, last good checkpoint"):
        loop.run(lambda step, batch, logging, player: StepResult(next(losses)))
    after_first = model.weight.detach().clone()
    assert not torch.equal(before, after_first)  # step 0 moved the weights, step 1 did not
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 1


def test_turns_step_each_player_with_the_others_frozen():
    from selfsup.engine.optim import TurnOptimizers

    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    optimizer = TurnOptimizers({"a": torch.optim.SGD(a.parameters(), lr=0.1), "b": torch.optim.SGD(b.parameters(), lr=0.1)})
    before = [a.weight.detach().clone(), b.weight.detach().clone()]
    grads_seen = {}

    def forward(step, batch, logging, player):
        grads_seen[player] = [p.requires_grad for p in (*a.parameters(), *b.parameters())]
        return StepResult((a.weight.sum() + b.weight.sum()) ** 2, scalars={f"{player}_loss": torch.tensor(1.0)})

    loop = Loop(optimizer, 1, lambda step: 0.1, 0.1,
                turns=[Turn("a", list(a.parameters()), list(b.parameters())),
                       Turn("b", list(b.parameters()), list(a.parameters()))])
    result = loop.run(forward)
    assert grads_seen == {"a": [True, True, False, False], "b": [False, False, True, True]}
    assert set(result.scalars) == {"a_loss", "b_loss"} and all(p.requires_grad for p in (*a.parameters(), *b.parameters()))
    assert not torch.equal(a.weight, before[0]) and not torch.equal(b.weight, before[1])  # each player stepped


def test_the_budget_rule():
    assert budget_steps(7, None, None, 10) == 7 and budget_steps(None, 1.5, None, 10) == 15
    assert budget_steps(None, None, 60.0, 10) is None and budget_steps(None, None, None, 10, default_epochs=2.0) == 20
    assert budget_steps(None, None, None, 10, default_steps=1000) == 1000
    with pytest.raises(ConfigError, match="give one budget"):
        budget_steps(3, None, 60.0, 10)


def test_only_the_loop_runs_optimizer_steps():
    """pretraining, semi-supervised training and fine-tuning all descend through engine.loop.descend
    (the linear probe's L-BFGS, a closure-driven solver, is not a training loop)."""
    calls = []
    for path in (ROOT / "selfsup").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.(step|backward)\(", line) and "def step" not in line:
                calls.append(f"{path.relative_to(ROOT)}:{number}")
    assert {c.split(":")[0] for c in calls} == {"selfsup/engine/loop.py", "selfsup/engine/optim.py",
                                                "selfsup/evaluate/linear.py"}, calls


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    from selfsup.config import PretrainConfig
    from selfsup.engine.trainer import pretrain

    out = tmp_path_factory.mktemp("encoder") / "run"
    pretrain(PretrainConfig(data="digits", backbone="small-convnet", steps=4, batch_size=64, out=str(out)), progress=False)
    return out


def test_finetune_resumed_after_a_kill_or_a_sigterm_ends_equal_to_an_uninterrupted_run(encoder, tmp_path):
    run = [sys.executable, "-m", "selfsup", "finetune", "--checkpoint", str(encoder), "--labeled", "digits",
           "--labels-per-class", "5", "--seeds", "1", "--lr-grid", "0.01", "--steps", "8", "--checkpoint-every", "3",
           "--quiet", "--json"]
    full = subprocess.run(run + ["--out", str(tmp_path / "full")], env=ENV, capture_output=True, text=True, check=True)
    killed = subprocess.run(run + ["--out", str(tmp_path / "run")], env={**ENV, "SELFSUP_KILL_AT_STEP": "7"},
                            capture_output=True)
    assert killed.returncode == -signal.SIGKILL  # in the first training: scratch, on the validation split
    first = tmp_path / "run" / "trainings" / "lpc5-seed0" / "scratch" / "val-lr0.01" / "checkpoints"
    assert sorted(p.name for p in first.glob("*.safetensors")) == ["step-000003.safetensors", "step-000006.safetensors"]
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "finetune", "--checkpoint", str(encoder), "--out",
                              str(tmp_path / "run"), "--resume", "--quiet", "--json"], env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(p.stdout.strip().splitlines()[-1])["rows"] for p in (full, resumed)]
    assert rows[0] == rows[1]
    assert not first.exists() and (first.parent / "result.json").exists()  # finished: its result kept

    # SIGTERM in the first training: its step ends, a checkpoint is written, --resume ends the same.
    stopped = subprocess.Popen(run + ["--out", str(tmp_path / "stopped")], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    first = tmp_path / "stopped" / "trainings" / "lpc5-seed0" / "scratch" / "val-lr0.01" / "checkpoints"
    while not (first / "latest.json").exists() and stopped.poll() is None:
        time.sleep(0.005)
    stopped.send_signal(signal.SIGTERM)
    _, stderr = stopped.communicate(timeout=120)
    assert stopped.returncode == 143, stderr
    assert re.search(r"^selfsup: stopped at step \d+ by SIGTERM; continue with --resume$", stderr, re.M), stderr
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "finetune", "--checkpoint", str(encoder), "--out",
                              str(tmp_path / "stopped"), "--resume", "--quiet", "--json"], env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["rows"] == rows[0]
