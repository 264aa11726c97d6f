"""selfsup train: pretrain -> train -> predict on digits, the model folder, the frozen-encoder head,
--init PATH, pretrain --init, and resume."""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import load_file

from conftest import run_cli

import selfsup


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """The README's user journey, short: pretrain on digits, train on 10 labels per class, predict."""
    root = tmp_path_factory.mktemp("journey")
    pre = run_cli("pretrain", "--data", "digits", "--method", "simclr", "--backbone", "small-convnet", "--views",
                  "small-gray", "--steps", "20", "--batch-size", "128", "--out", str(root / "pretrain"), "--quiet")
    assert pre.returncode == 0, pre.stderr
    done = run_cli("train", "--checkpoint", str(root / "pretrain"), "--labeled", "digits", "--labels-per-class", "10",
                   "--steps", "30", "--out", str(root / "model"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    predicted = run_cli("predict", "--model", str(root / "model"), "--data", "digits", "--json", "--quiet")
    assert predicted.returncode == 0, predicted.stderr
    return root, json.loads(done.stdout.splitlines()[-1]), json.loads(predicted.stdout.splitlines()[-1])


def test_predictions_score_what_train_reported(journey):
    root, trained, predicted = journey
    assert predicted["split"].startswith("test") and predicted["n"] == trained["n_test"] == 359
    with open(predicted["predictions"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 359 and list(rows[0])[:3] == ["item", "label", "predicted"]
    from_csv = np.mean([r["label"] == r["predicted"] for r in rows])
    assert from_csv == pytest.approx(trained["test_accuracy"]) == pytest.approx(predicted["accuracy"])
    probabilities = np.array([[float(r[f"p_{c}"]) for c in trained["classes"]] for r in rows])
    assert np.allclose(probabilities.sum(1), 1, atol=1e-4)
    assert [trained["classes"][i] for i in probabilities.argmax(1)] == [r["predicted"] for r in rows]
    test_keys = set(json.loads((root / "model" / "splits.json").read_text())["test"])
    assert {r["item"] for r in rows} == test_keys  # the train run's held-out split, nothing it trained on


def test_the_model_folder_describes_the_model(journey):
    root, trained, _ = journey
    info = json.loads((root / "model" / "model.json").read_text())
    assert info["format"] == "selfsup-model/1" and info["classes"] == [str(i) for i in range(10)]
    assert info["preprocessing"]["channels"] == 1 and info["preprocessing"]["image_size"] == 8
    assert info["test_accuracy"] == trained["test_accuracy"] and info["lr"] in (0.001, 0.003, 0.01)
    assert info["config"]["labels_per_class"] == "10" and info["config"]["steps"] == 30
    assert info["validation_accuracy"] == trained["validation_scores"][f"{info['lr']:g}"]
    weights = load_file(str(root / "model" / "model.safetensors"))
    assert weights["head.weight"].shape == (10, info["feature_dim"])
    assert (root / "model" / "metrics.csv").read_text().splitlines()[0].startswith("step,epoch,loss,lr")
    assert len((root / "model" / "subsets" / "labeled.txt").read_text().split()) == 100


def test_load_model_predicts_as_the_command_does(journey):
    root, trained, predicted = journey
    model = selfsup.load_model(root / "model")
    assert not model.training and model.classes == trained["classes"]
    from sklearn.datasets import load_digits

    digits = load_digits()
    with open(predicted["predictions"]) as f:
        rows = {r["item"]: r for r in csv.DictReader(f)}
    index = [int(k[len("digits["):-1]) for k in list(rows)[:20]]
    images = [np.clip(digits.images[i] * 255 / 16, 0, 255).round().astype(np.uint8) for i in index]
    names, probabilities = model.predict(images)
    assert names == [rows[f"digits[{i}]"]["predicted"] for i in index]
    first = rows[f"digits[{index[0]}]"]
    assert probabilities[0].tolist() == pytest.approx([float(first[f"p_{c}"]) for c in model.classes], abs=1e-5)
    logits = model(torch.stack([model.preprocess(image) for image in images]))
    assert torch.equal(logits.argmax(1), probabilities.argmax(1))


def test_resume_of_a_finished_model_reads_it_back(journey):
    root, trained, _ = journey
    again = run_cli("train", "--resume", "--out", str(root / "model"), "--json", "--quiet")
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["test_accuracy"] == trained["test_accuracy"]


def test_freeze_fits_a_linear_head_on_the_untouched_encoder(journey, tmp_path):
    root, _, _ = journey
    done = run_cli("train", "--checkpoint", str(root / "pretrain"), "--freeze", "--labeled", "digits",
                   "--labels-per-class", "10", "--out", str(tmp_path / "frozen"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["freeze"] and result["lr"] is None and result["weight_decay"] in (0.0, 1e-4, 1e-3, 1e-2)
    assert result["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    encoder = load_file(str(root / "pretrain" / "encoder.safetensors"))
    model = load_file(str(tmp_path / "frozen" / "model.safetensors"))
    assert all(torch.equal(model[f"backbone.model.{k}"], v) for k, v in encoder.items())


def test_init_path_trains_from_a_torchvision_file_and_pretrain_continues_from_it(tmp_path, caplog):
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, tmp_path / "r18.pth")
    caplog.set_level(logging.INFO, logger="selfsup")
    done = run_cli("train", "--init", str(tmp_path / "r18.pth"), "--labeled", "digits", "--labels-per-class", "2",
                   "--steps", "2", "--out", str(tmp_path / "model"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "small-image stem's first convolution (conv1) is new" in caplog.text
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["init"] == str(tmp_path / "r18.pth") and info["preprocessing"]["mean"] == [pytest.approx(0.449)]

    from selfsup.config import PretrainConfig
    from selfsup.engine.build import build_method
    from selfsup.views import Normalization

    cfg = PretrainConfig(data="digits", method="simclr", backbone="resnet18", stem="imagenet",
                         init=str(tmp_path / "r18.pth"))
    method, _ = build_method(cfg, 3, 32, Normalization([0.5] * 3, [0.25] * 3), 100)
    loaded = method.backbone.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)  # pretraining starts from the file's weights
    pre = run_cli("pretrain", "--data", "digits", "--init", str(tmp_path / "r18.pth"), "--steps", "2",
                  "--batch-size", "32", "--out", str(tmp_path / "dapt"), "--quiet")
    assert pre.returncode == 0, pre.stderr
    encoder = json.loads((tmp_path / "dapt" / "encoder.json").read_text())
    assert encoder["normalization"]["mean"] == [pytest.approx(0.449)]  # the input ImageNet weights expect


def test_a_killed_train_resumes_to_the_same_model(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    args = ["train", "--init", "random", "--backbone", "small-convnet", "--labeled", "digits", "--labels-per-class", "4",
            "--steps", "12", "--checkpoint-every", "4", "--quiet"]

    def run(out, *extra, kill_at=None):
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        if kill_at:
            env["SELFSUP_KILL_AT_STEP"] = str(kill_at)
        return subprocess.run([sys.executable, "-m", "selfsup", *args, "--out", str(out), *extra], env=env,
                              capture_output=True, text=True, timeout=600)

    assert run(tmp_path / "whole").returncode == 0
    assert run(tmp_path / "killed", kill_at=6).returncode == -9  # SIGKILL in the first validation training
    resumed = run(tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    again = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(whole[k], again[k]) for k in whole)
