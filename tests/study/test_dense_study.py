"""The segmentation study: scratch, pretrained and a weights-file baseline on the same labeled images,
per-class IoU, the overlays, a resumed re-run, and the report in a headless browser."""
import json
import shutil

import numpy as np
import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.backbones.io import save_encoder
from selfsup.cli import main
from selfsup.views import Normalization
from tests.conftest import square_pair, write_source

SMALL = ["--labeled-images", "1,2", "--seeds", "2", "--finetune-steps", "3", "--finetune-batch-size", "2",
         "--crop-size", "32", "--lr-grid", "0.01,0.03", "--quiet", "--json"]


@pytest.fixture(scope="module")
def dense_study(tmp_path_factory):
    """A study of a saved small-convnet encoder against scratch and a weights file, on bright squares."""
    root = tmp_path_factory.mktemp("dense")
    rng = np.random.default_rng(0)
    write_source(root / "squares", {f"t{i}": square_pair(rng) for i in range(5)}, "train")
    write_source(root / "squares", {f"v{i}": square_pair(rng) for i in range(4)}, "test")
    torch.manual_seed(0)
    encoder = build_backbone("small-convnet", 1, "small", 32)
    (root / "encoder").mkdir()
    save_encoder(root / "encoder", encoder, Normalization([0.3], [0.3]), 32, 32)
    torch.save(build_backbone("small-convnet", 1, "small", 32).model.state_dict(), root / "other.pt")
    args = ["study", "--task", "segmentation", "--labeled", str(root / "squares"), "--methods", "",
            "--checkpoint", f"mine={root / 'encoder'}", "--baselines", f"scratch,{root / 'other.pt'}", *SMALL,
            "--out", str(root / "study")]
    return root, args


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr().out
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else out)


def test_segmentation_study_rows_report_and_resume(dense_study, capsys):
    root, args = dense_study
    code, result = _run(args, capsys)
    assert code == 0, result
    study = root / "study"
    rows = result["rows"]
    # 2 budgets x 2 seeds x (scratch, the encoder, the weights file); each row names its labeled images
    assert sorted({(r["method"], r["evaluation"]) for r in rows}) == [
        ("mine", "finetune"), ("scratch", "scratch"), ("weights other", "finetune")]
    assert len(rows) == 12 and all(0 <= r["mean_iou"] <= 1 and len(r["iou"]) == 2 for r in rows)
    assert all(r["accuracy"] == r["mean_iou"] == pytest.approx(np.mean(r["iou"])) for r in rows)
    assert {r["lr"] for r in rows if r["n_labels"] == 1} == {0.01}  # one image: the grid's smallest
    assert (study / "subsets" / "images2-seed1.txt").read_text().count(".png") == 2
    header = (study / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["iou_0", "iou_255"] and "mean_iou" in header
    assert {p["budget"] for p in result["per_class_iou"]} == {"1", "2"}
    # overlays: the smallest budget's seed-0 rows keep 3 predicted test masks, class indices at the image's size
    kept = [r for r in rows if r["predicted"]]
    assert len(kept) == 3 and all(r["n_labels"] == 1 and r["seed"] == 0 and len(r["predicted"]) == 3 for r in kept)
    from PIL import Image

    mask = np.array(Image.open(study / kept[0]["predicted"]["test/images/v0.png"]))
    assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 1}
    assert (study / "overlays.png").exists() and (study / "label_efficiency.png").exists()
    page = (study / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and 'id="per-class"' in page and "2 images" in page
    # a re-run finds every training done: nothing is added, the same numbers come back
    before = (study / "results.jsonl").read_text()
    code, again = _run(args, capsys)
    assert code == 0 and (study / "results.jsonl").read_text() == before
    assert [r["mean_iou"] for r in again["rows"]] == [r["mean_iou"] for r in rows]


def test_segmentation_report_renders_in_a_headless_browser(dense_study, capsys, tmp_path):
    from tests.study.test_study import rendered

    root, args = dense_study
    if not (root / "study" / "report.html").exists():
        assert _run(args, capsys)[0] == 0
    probe = rendered(root / "study" / "report.html", tmp_path)
    (curve, overlays) = probe["imgs"]
    assert curve[0] > 300 and overlays[0] > 1000 and overlays[1] > 600 and overlays[2] > 100  # the overlay grid, shown
    assert probe["rows"] == ["scratch", "mine", "weights other"]


def test_segmentation_study_refuses_class_budgets_and_sources_without_masks(tmp_path, capsys):
    assert main(["study", "--task", "segmentation", "--labeled", "digits", "--methods", "simclr",
                 "--labels-per-class", "1", "--out", str(tmp_path / "a")]) == 2
    assert "--labeled-images" in capsys.readouterr().err
    (tmp_path / "plain" / "cats").mkdir(parents=True)
    shutil.copy(__file__, tmp_path / "plain" / "cats" / "not-an-image.txt")
    torch.manual_seed(0)
    (tmp_path / "enc").mkdir()
    save_encoder(tmp_path / "enc", build_backbone("small-convnet", 1, "small", 32), Normalization([0.3], [0.3]), 32, 32)
    code = main(["study", "--task", "segmentation", "--labeled", str(tmp_path / "plain"), "--methods", "",
                 "--checkpoint", f"e={tmp_path / 'enc'}", "--out", str(tmp_path / "b"), "--quiet"])
    assert code in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "masks" in err[0]
