"""selfsup semisup: UDA and FixMatch train on digits, resume exactly, and reject bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup import load_model
from selfsup.cli import main
from selfsup.config import SemisupConfig
from selfsup.semisup import run_semisup, weak_view

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--labeled", "digits", "--backbone", "small-convnet", "--labels-per-class", "2", "--batch-size", "16",
         "--unlabeled-ratio", "3", "--quiet", "--json"]


def test_weak_view_flips_and_shifts_within_an_eighth():
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[..., 16, 16] = 255
    out = weak_view(image.expand(64, -1, -1, -1).contiguous(), torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.uint8
    where = [(o[0] == 255).nonzero()[0].tolist() for o in out]
    rows, cols = {r for r, _ in where}, {c for _, c in where}
    assert max(abs(r - 16) for r in rows) <= 4 and len(rows) > 3  # translated by up to 4 px of 32
    assert any(c < 15 for c in cols) and len(cols) > 3  # flipped (column 15) and shifted


@pytest.mark.parametrize("method", ["fixmatch", "uda"])
def test_a_method_trains_on_few_labels_and_writes_its_run(method, tmp_path):
    cfg = SemisupConfig(method=method, labeled="digits", backbone="small-convnet", labels_per_class="2", steps=40,
                        batch_size=16, unlabeled_ratio=3, out=str(tmp_path / method), log_every=10)
    torch.set_num_threads(1)
    result = run_semisup(cfg, progress=False)
    assert result["n_labels"] == 20 and result["steps"] == 40
    assert result["test_accuracy"] > 0.2  # chance is 0.1 with 20 labels
    out = tmp_path / method
    for name in ("config.yaml", "metrics.csv", "result.json", "encoder.safetensors", "head.safetensors",
                 "subsets/2-seed0.txt"):
        assert (out / name).exists(), name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,supervised_loss,unlabeled_loss,mask_rate") and len(rows) == 5
    assert any(float(r.split(",")[3]) > 0 for r in rows[1:])  # the unlabeled term took part
    model = load_model(out)  # the classifier is a model folder too: predict and export read it
    assert model.info["test_accuracy"] == result["test_accuracy"] and model.classes == [str(i) for i in range(10)]


def _run(out: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if kill_at:
        env["SELFSUP_KILL_AT_STEP"] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "selfsup", "semisup", "--method", "fixmatch", *SMALL, "--steps", "12",
                           "--checkpoint-every", "4", "--out", str(out), *extra], env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    whole = _run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert _run(tmp_path / "resumed", kill_at=6).returncode != 0
    resumed = _run(tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["test_accuracy"] == \
        json.loads(whole.stdout.strip().splitlines()[-1])["test_accuracy"]
    for name in ("encoder.safetensors", "head.safetensors"):
        a, b = load_file(tmp_path / "whole" / name), load_file(tmp_path / "resumed" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=f"{name}: {key}")


def test_bad_input_is_a_usage_error(tmp_path, capsys):
    assert main(["semisup", *SMALL, "--labels-per-class", "1,10", "--out", str(tmp_path / "a")]) == 2
    assert "one budget" in capsys.readouterr().err
    assert main(["semisup", *SMALL, "--method-arg", "tsa=cosine", "--method", "uda", "--out", str(tmp_path / "b")]) == 2
    assert "tsa" in capsys.readouterr().err
    assert main(["semisup", *SMALL, "--method-arg", "nope=1", "--out", str(tmp_path / "c")]) == 2


def test_training_starts_from_a_pretrained_checkpoint(tmp_path):
    """With --checkpoint the classifier's backbone starts from the encoder's weights (lr 0 keeps them)."""
    from selfsup.config import PretrainConfig
    from selfsup.engine.trainer import pretrain

    torch.set_num_threads(1)
    pretrain(PretrainConfig(data="digits", backbone="small-convnet", steps=3, batch_size=32, out=str(tmp_path / "pre")),
             progress=False)
    run_semisup(SemisupConfig(labeled="digits", checkpoint=str(tmp_path / "pre"), labels_per_class="1", steps=2,
                              batch_size=8, unlabeled_ratio=2, lr=0.0, out=str(tmp_path / "semi")), progress=False)
    before, after = load_file(tmp_path / "pre" / "encoder.safetensors"), load_file(tmp_path / "semi" / "encoder.safetensors")
    weights = [k for k in before if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert weights and before.keys() == after.keys()
    for key in weights:
        torch.testing.assert_close(after[key], before[key], msg=key)


def test_the_supervised_baseline_within_a_time_limit(tmp_path):
    """μ = 0 trains on the labels alone (no unlabeled term); --time-limit becomes a step count that
    config.yaml keeps, so a resume replays the same schedule."""
    import yaml

    torch.set_num_threads(1)
    out = tmp_path / "sup"
    result = run_semisup(SemisupConfig(labeled="digits", backbone="small-convnet", labels_per_class="5", time_limit=6,
                                       batch_size=16, unlabeled_ratio=0, out=str(out), log_every=5), progress=False)
    assert result["unlabeled_ratio"] == 0 and result["steps"] >= 5
    assert result["test_accuracy"] > 0.2
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["steps"] == result["steps"] and saved["time_limit"] is None
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert rows and all(float(r[3]) == 0 and float(r[4]) == 0 for r in rows)  # unlabeled loss, mask rate
    assert main(["semisup", *SMALL, "--steps", "5", "--time-limit", "5", "--out", str(tmp_path / "both")]) == 2
    assert main(["semisup", *SMALL[:-4], "--unlabeled-ratio", "-1", "--out", str(tmp_path / "neg")]) == 2
