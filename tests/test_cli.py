import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import run_cli
from selfsup.cli import main
from selfsup.methods import METHODS
from selfsup.methods.base import Method, Recipe

TINY = ["--data", "digits", "--backbone", "small-convnet", "--views", "small-gray", "--batch-size", "32",
        "--steps", "4", "--quiet"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", [[], ["pretrain"], ["eval", "knn"], ["finetune"], ["demo"], ["methods"]])
def test_every_command_has_help(command):
    result = cli(*command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_pretrain_json_contract_and_outputs(tmp_path):
    out = tmp_path / "run"
    result = cli("pretrain", *TINY, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[-1])
    assert payload["steps"] == 4 and 0 <= payload["knn_top1"] <= 1
    for name in ("config.yaml", "encoder.safetensors", "encoder.json", "metrics.csv", "result.json",
                 "splits.json", "checkpoints/latest.json", "tensorboard"):
        assert (out / name).exists(), name
    # A non-empty output folder needs --resume or --overwrite.
    again = cli("pretrain", *TINY, "--out", str(out))
    assert again.returncode == 2 and again.stderr.strip().startswith("selfsup: error:")
    assert len(again.stderr.strip().splitlines()) == 1
    assert cli("pretrain", *TINY, "--out", str(out), "--overwrite").returncode == 0


def test_config_precedence_defaults_file_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"batch_size": 16, "seed": 7, "lr": 0.5, "method_args": {"temperature": 0.2}}))
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "--config", str(config), "--seed", "3", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    # --batch-size 32 (flag) beats 16 (file); seed 3 (flag) beats 7; lr from the file; defaults elsewhere.
    assert saved["batch_size"] == 32 and saved["seed"] == 3 and saved["lr"] == 0.5
    assert saved["method_args"]["temperature"] == 0.2 and saved["stem"] == "auto"
    # --method-arg KEY=VALUE updates the file's method_args key by key; values parse as YAML.
    out2 = tmp_path / "run2"
    assert main(["pretrain", *TINY, "--config", str(config), "--method-arg", "projection_dim=32",
                 "--view-arg", "crop_scale=[0.5, 1.0]", "--out", str(out2)]) == 0
    saved = yaml.safe_load((out2 / "config.yaml").read_text())
    assert saved["method_args"]["temperature"] == 0.2 and saved["method_args"]["projection_dim"] == 32
    assert saved["view_args"]["crop_scale"] == [0.5, 1.0]


@pytest.mark.parametrize("args,code,message", [
    (["pretrain", "--method", "nope", "--data", "digits"], 2, "unknown method 'nope'"),
    (["pretrain", "--data", "/no/such/folder"], 1, "data not found"),
    (["pretrain", "--data", "digits", "--config", "/no/such.yaml"], 2, "config file not found"),
    (["eval", "knn", "--checkpoint", "/no/such/run", "--labeled", "digits"], 1, "checkpoint not found"),
    (["pretrain", "--data", "digits", "--epochs", "1", "--steps", "2"], 2, "not allowed with"),
    (["pretrain", "--data", "digits", "--method", "simclr", "--view-arg", "local_crops=2"], 2,
     "does not use multi-crop's local crops"),
    (["pretrain", "--data", "digits", "--method-arg", "temperature"], 2, "expected KEY=VALUE"),
    (["pretrain", "--data", "digits", "--method-arg", "nope=1"], 2, "has no argument nope"),
    (["pretrain", "--data", "digits", "--warmup-fraction", "1.0"], 2, "warmup_fraction must be in [0, 1)"),
])
def test_errors_are_one_line_with_the_right_exit_code(tmp_path, args, code, message):
    result = cli(*args, "--out", str(tmp_path / "o")) if args[0] == "pretrain" else cli(*args)
    assert result.returncode == code
    assert message in result.stderr
    if code == 1 or "unknown method" in message:
        assert result.stderr.strip().splitlines()[-1].startswith("selfsup: error:")


class _Exploding(Method):
    """Test-only method: finite loss for two steps, then NaN. https://arxiv.org/abs/0000.00000"""

    name = "exploding-test"
    paper = "none"
    recipe = Recipe(optimizer="sgd", base_lr=0.01, views="small-gray")

    def __init__(self, backbone, views):
        super().__init__(backbone, views)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, images, generator):
        self.calls += 1
        loss = self.backbone(self.views(images, generator, n=1)[0]).pow(2).mean()
        return {"loss": loss * float("nan") if self.calls > 2 else loss}


def test_non_finite_loss_exits_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(METHODS._entries, "exploding-test", _Exploding)  # registered for this test only
    out = tmp_path / "run"
    code = main(["pretrain", *TINY, "--method", "exploding-test", "--checkpoint-every", "1", "--out", str(out)])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("selfsup: error: non-finite loss") and "step-000002" in err
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 2


def test_eval_and_finetune_json(tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    result = run_cli("eval", "knn", "--checkpoint", str(run), "--labeled", "digits", "--json")
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["protocol"] == "knn" and payload["k"] == 200 and payload["temperature"] == 0.1
    assert 0.2 < payload["top1"] <= 1 and payload["top1"] <= payload["top5"]
    assert payload["n_train"] + payload["n_test"] == 1797 and abs(payload["n_test"] - 360) <= 5
    result = run_cli("eval", "linear", "--checkpoint", str(run / "encoder.safetensors"), "--labeled", "digits", "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["protocol"] == "linear"
    # small-convnet's third block ends at module 19 (its ReLU, 128 channels): a per-layer probe.
    result = run_cli("eval", "knn", "--checkpoint", str(run), "--labeled", "digits", "--layer", "19", "--json")
    inner = json.loads(result.stdout.strip().splitlines()[-1])
    assert inner["layer"] == "19" and 0.2 < inner["top1"] <= 1 and inner["top1"] != payload["top1"]
    result = run_cli("eval", "knn", "--checkpoint", str(run), "--labeled", "digits", "--layer", "nope")
    assert result.returncode != 0 and "no module 'nope'" in result.stderr.strip().splitlines()[-1]
    # Kolesnikov et al.'s patch-based evaluation: 2 x 2 cells read alone, their features averaged.
    result = run_cli("eval", "knn", "--checkpoint", str(run), "--labeled", "digits", "--patch-grid", "2", "--json")
    cells = json.loads(result.stdout.strip().splitlines()[-1])
    assert cells["patch_grid"] == 2 and cells["layer"] is None and 0.12 < cells["top1"] <= 1  # 4-px cells: weak, above chance
    assert cells["top1"] != payload["top1"]
    result = run_cli("eval", "knn", "--checkpoint", str(run), "--labeled", "digits", "--patch-grid", "50")
    assert result.returncode != 0 and "patch grid 50" in result.stderr.strip().splitlines()[-1]
    result = run_cli("finetune", "--checkpoint", str(run), "--labeled", "digits", "--labels-per-class", "2",
                 "--seeds", "2", "--steps", "3", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout.strip().splitlines()[-1])["rows"]
    assert rows[0]["labels_per_class"] == 2 and rows[0]["n_labels"] == 20 and rows[0]["seeds"] == 2
    for key in ("scratch_accuracy", "scratch_accuracy_std", "pretrained_accuracy", "pretrained_accuracy_std",
                "linear_accuracy"):
        assert 0 <= rows[0][key] <= 1
    assert sorted(p.name for p in (run / "finetune" / "subsets").iterdir()) == ["lpc2-seed0.txt", "lpc2-seed1.txt"]


def _folder_with_bad_files(root, size: int, n: int = 12):
    import numpy as np

    from conftest import make_jpeg

    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(n):
        (root / f"img{i:02d}.jpg").write_bytes(make_jpeg(rng, size))
    good = make_jpeg(rng, size)
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "zero.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("a text file with a .jpg name")
    return root


@pytest.mark.parametrize("size,extra", [(32, []), (96, ["--image-size", "72", "--num-workers", "2"])],
                         ids=["cached", "streamed"])
def test_bad_files_pretrain_to_the_end_named_once(tmp_path, size, extra):
    data = _folder_with_bad_files(tmp_path / "pool", size)
    result = cli("pretrain", "--data", str(data), "--backbone", "small-convnet", "--batch-size", "4",
                 "--steps", "6", "--out", str(tmp_path / "run"), "--quiet", "--json", *extra)
    assert result.returncode == 0, result.stderr
    for bad in ("truncated.jpg", "zero.jpg", "notes.jpg"):
        assert result.stderr.count(bad) == 1, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["steps"] == 6 and payload["skipped_images"] == 3


def test_strict_fails_on_the_first_bad_file(tmp_path):
    data = _folder_with_bad_files(tmp_path / "pool", 32)
    result = cli("pretrain", "--data", str(data), "--backbone", "small-convnet", "--batch-size", "4",
                 "--steps", "2", "--strict", "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and "unreadable image" in result.stderr


def test_time_limit_becomes_a_fixed_step_count(tmp_path):
    out = tmp_path / "run"
    args = [a for a in TINY if a not in ("--steps", "4")]
    assert main(["pretrain", *args, "--time-limit", "4", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    result = json.loads((out / "result.json").read_text())
    assert saved["time_limit"] is None and saved["steps"] == result["steps"] >= 1
    assert result["seconds"] < 4 + 15  # the budget holds (startup and final kNN aside)


def test_checkpoint_file_and_separate_test_folder(tmp_path, cifar_folder):
    import selfsup

    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(cifar_folder), "--backbone", "small-convnet", "--batch-size", "16",
                 "--steps", "2", "--quiet", "--out", str(out)]) == 0
    step_file = out / "checkpoints" / "step-000002.safetensors"
    encoder, _ = selfsup.load_encoder(step_file)
    reference, _ = selfsup.load_encoder(out)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(encoder(x), reference(x))
    result = cli("eval", "knn", "--checkpoint", str(step_file), "--labeled", str(cifar_folder / "train"),
                 "--test", str(cifar_folder / "test"), "--json")
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["n_train"], payload["n_test"], payload["k"]) == (80, 40, 80)


def test_methods_lists_every_method_with_its_paper_and_defaults(capsys):
    assert main(["methods", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["methods"]
    assert [m["name"] for m in listed] == METHODS.names()
    mae = next(m for m in listed if m["name"] == "mae")
    assert mae["defaults"]["backbone"] == "vit-tiny" and mae["defaults"]["args"]["mask_ratio"] == 0.75
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in METHODS.names()) and "vit-tiny, adamw" in text
