"""The model out: ONNX and TorchScript exports compute the PyTorch model's logits; predict's hostile input."""
from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from conftest import CIFAR_SLICE, run_cli

from selfsup.backbones import build_backbone
from selfsup.downstream import DownstreamModel, Preprocessing, load_model, save_model

CLASSES = sorted(p.name for p in (CIFAR_SLICE / "test").iterdir())


def saved_model(folder, name: str, stem: str, channels: int) -> DownstreamModel:
    """A classifier of CIFAR-10's classes with seeded random weights and batch-norm statistics that are not
    the identity (so the export must carry them), saved as ``selfsup train`` saves one."""
    torch.manual_seed(0)
    backbone = build_backbone(name, channels, stem, 32)
    preprocess = Preprocessing(channels, 32, 32, [0.45] * channels, [0.25] * channels)
    model = DownstreamModel(backbone, CLASSES, preprocess)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    save_model(folder, model, CLASSES, preprocess, {"init": "random"})
    return model


def real_batch(model: DownstreamModel, n: int) -> torch.Tensor:
    files = sorted((CIFAR_SLICE / "test").rglob("*.jpg"))[:n]
    return torch.stack([model.preprocess(f) for f in files])


@pytest.mark.parametrize("name,stem,channels", [("resnet18", "imagenet", 3), ("resnet18", "small", 3),
                                                ("small-convnet", "small", 1)])
def test_exports_compute_the_models_logits_at_any_batch_size(tmp_path, name, stem, channels):
    import onnxruntime

    saved_model(tmp_path, name, stem, channels)
    model = load_model(tmp_path)
    for fmt in ("onnx", "torchscript"):
        done = run_cli("export", "--model", str(tmp_path), "--format", fmt, "--json")
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout.splitlines()[-1])
        assert record["max_abs_difference"] < 1e-4
    info = json.loads((tmp_path / "model.json").read_text())
    assert set(info["exports"]) == {"onnx", "torchscript"} and info["exports"]["onnx"]["opset"] >= 17
    beside = json.loads((tmp_path / "preprocessing.json").read_text())
    assert beside["classes"] == CLASSES and beside["mean"] == [0.45] * channels and beside["input_name"] == "images"
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(tmp_path / "model.torchscript.pt"))
    for n in (1, 7):
        x = real_batch(model, n)
        with torch.no_grad():
            expected = model(x)
            torch.testing.assert_close(scripted(x), expected, atol=1e-4, rtol=0)
        onnx_logits = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
        torch.testing.assert_close(onnx_logits, expected, atol=1e-4, rtol=0)


def test_a_folder_without_model_json_is_one_line(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    for command in (("predict", "--data", "digits"), ("export",)):
        done = run_cli(command[0], "--model", str(tmp_path), *command[1:])
        assert done.returncode == 1 and done.stderr.strip().splitlines() == [
            f"selfsup: error: {tmp_path} holds no model.json: not a model folder (selfsup train writes one)"]


def test_predict_converts_channels_once_and_names_and_skips_unreadable_files(tmp_path, caplog):
    saved_model(tmp_path / "model", "small-convnet", "small", 1)  # reads gray images; the folder is RGB
    data = tmp_path / "images"
    shutil.copytree(CIFAR_SLICE / "test", data)
    (data / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    caplog.set_level(logging.INFO, logger="selfsup")
    done = run_cli("predict", "--model", str(tmp_path / "model"), "--data", str(data), "--out",
                   str(tmp_path / "p.csv"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["n"] == 40 and result["skipped"] == 1 and result["n_scored"] == 40
    assert caplog.text.count("images have 3 channel(s), the model reads 1: converted") == 1
    assert caplog.text.count("cat/broken.jpg") == 1
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and "cat/broken.jpg" not in {r["item"] for r in rows}
    assert result["accuracy"] == pytest.approx(np.mean([r["label"] == r["predicted"] for r in rows]))
    model = load_model(tmp_path / "model")
    first = rows[0]
    names, probabilities = model.predict([data / first["item"]])
    assert names == [first["predicted"]]
    assert probabilities[0].tolist() == pytest.approx([float(first[f"p_{c}"]) for c in CLASSES], abs=1e-5)
