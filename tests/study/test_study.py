"""The label-efficiency study: its pure parts against hand-worked cases, then a real run on digits."""
import itertools
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.config import StudyConfig, build_config
from selfsup.evaluate.diagnostics import alignment, uniformity
from selfsup.evaluate.linear import DEFAULT_DECAY, cv_folds, linear_probe
from selfsup.study.results import ResultLog, Summary, label_multipliers, labels_needed, summarize


# --- pure parts ------------------------------------------------------------------------------

def test_labels_needed_interpolates_on_log_labels():
    curve = [(10, 0.5), (100, 0.7), (1000, 0.8)]
    n, rel = labels_needed(curve, 0.6)  # halfway between 10 and 100 on a log axis
    assert rel == "=" and n == pytest.approx(math.sqrt(10 * 100))
    assert labels_needed(curve, 0.75) == (pytest.approx(10 ** 2.5), "=")
    assert labels_needed(curve, 0.7) == (pytest.approx(100), "=")
    assert labels_needed(curve, 0.4) == (10, "<")  # scratch's smallest budget already does as well
    assert labels_needed(curve, 0.9) == (1000, ">")  # scratch never gets there
    # A dip in the scratch curve does not count: (100, 0.45) is read as 0.5.
    assert labels_needed([(10, 0.5), (100, 0.45), (1000, 0.9)], 0.7) == (pytest.approx(10 ** 2.5), "=")


def test_label_multiplier_uses_each_methods_own_scratch_curve():
    summary = [Summary("scratch", "scratch", "1", 10, 0.2, 0.0, 3), Summary("scratch", "scratch", "10", 100, 0.6, 0.0, 3),
               Summary("s2", "scratch", "1", 10, 0.1, 0.0, 3), Summary("s2", "scratch", "10", 100, 0.2, 0.0, 3),
               Summary("simclr", "linear", "1", 10, 0.4, 0.0, 3), Summary("mae", "linear", "1", 10, 0.15, 0.0, 3)]
    out = {m["method"]: m for m in label_multipliers(summary, {"simclr": "scratch", "mae": "s2"})}
    assert out["simclr"]["multiplier"] == pytest.approx(math.sqrt(10 * 100) / 10, rel=1e-3)
    assert out["mae"]["scratch_labels_needed"] == pytest.approx(math.sqrt(10 * 100), rel=1e-3)


def test_summary_is_mean_and_population_std_over_seeds():
    rows = [{"method": "m", "evaluation": "linear", "budget": "1", "n_labels": 10, "seed": s, "accuracy": a}
            for s, a in enumerate([0.2, 0.4, 0.6])]
    (s,) = summarize(rows)
    assert (s.mean, s.seeds, s.n_labels) == (pytest.approx(0.4), 3, 10)
    assert s.std == pytest.approx(math.sqrt(((0.2 ** 2) * 2) / 3))


def test_result_log_survives_a_torn_last_line(tmp_path):
    log = ResultLog(tmp_path / "r.jsonl")
    log.add({"method": "m", "evaluation": "knn", "budget": "1", "seed": 0, "accuracy": 0.5})
    with open(tmp_path / "r.jsonl", "a") as f:
        f.write('{"method": "m", "evaluation": "kn')  # killed mid-write
    again = ResultLog(tmp_path / "r.jsonl")
    assert ("m", "knn", "1", 0) in again and len(again.rows) == 1


def test_alignment_and_uniformity_match_explicit_loops():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(12, 5, generator=g, dtype=torch.float64), torch.randn(12, 5, generator=g, dtype=torch.float64)
    a = [[x / math.sqrt(sum(c * c for c in v)) for x in v] for v in z1.tolist()]
    b = [[x / math.sqrt(sum(c * c for c in v)) for x in v] for v in z2.tolist()]
    expected_align = sum(sum((x - y) ** 2 for x, y in zip(u, v)) for u, v in zip(a, b)) / len(a)
    pairs = [sum((x - y) ** 2 for x, y in zip(a[i], a[j])) for i, j in itertools.combinations(range(len(a)), 2)]
    expected_uniform = math.log(sum(math.exp(-2 * d) for d in pairs) / len(pairs))
    assert alignment(z1, z2) == pytest.approx(expected_align, abs=1e-6)
    assert uniformity(z1) == pytest.approx(expected_uniform, abs=1e-6)
    # Invariances: identical views align perfectly; one point is maximally non-uniform (log 1);
    # a rotation of the feature space changes neither.
    assert alignment(z1, z1 * 3.0) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(torch.ones(6, 5)) == pytest.approx(0.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert uniformity(z1 @ q) == pytest.approx(uniformity(z1), abs=1e-9)
    assert alignment(z1 @ q, z2 @ q) == pytest.approx(alignment(z1, z2), abs=1e-9)


def test_linear_probe_cross_validates_only_with_two_labels_per_class():
    assert cv_folds(torch.tensor([0, 1, 2]), 3) == 0
    assert cv_folds(torch.tensor([0, 0, 0, 1, 1, 1]), 2) == 3
    assert cv_folds(torch.arange(100) % 2, 2) == 5
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 4, generator=g), torch.tensor([0, 1, 2])
    _, decay = linear_probe(x, y, x, 3)
    assert decay == DEFAULT_DECAY  # the stated default: nothing to validate on
    centres = torch.randn(3, 8, generator=g) * 3
    y = torch.arange(60) % 3
    x = centres[y] + torch.randn(60, 8, generator=g)
    scores, _ = linear_probe(x, y, centres, 3)
    assert (scores.argmax(1) == torch.arange(3)).all()


# --- a real study on digits -------------------------------------------------------------------

STUDY = ["--data", "digits", "--backbone", "small-convnet", "--steps", "6", "--batch-size", "64",
         "--labels-per-class", "1,5,all", "--seeds", "2", "--finetune-steps", "4", "--quiet"]
CONFIG = {"pretrain": {"views": "small-gray"}, "map_points": 120, "lr_grid": [0.003, 0.01]}


def _config(tmp_path: Path) -> str:
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return str(path)


class _Report(HTMLParser):
    """Collects table ids with their body row counts, and inlined images."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._table, self._in_body = {}, [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = 0
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table] += 1
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study on digits: SimCLR and rotation, budgets 1, 5 and all, 2 seeds, all four evaluations."""
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "study"
    code = main(["study", *STUDY, "--methods", "simclr,rotation", "--config", _config(tmp), "--out", str(out), "--json"])
    assert code == 0
    return out


def test_study_writes_every_row_and_output(study):
    result = json.loads((study / "results.json").read_text())
    # (1 + 5 per class: 2 seeds each; all: 1 seed) x (scratch once + 2 methods x 3 evaluations)
    assert len(result["rows"]) == (2 + 2 + 1) * (1 + 2 * 3)
    keys = {(r["method"], r["evaluation"]) for r in result["rows"]}
    assert keys == {("scratch", "scratch")} | {(m, e) for m in ("simclr", "rotation") for e in ("finetune", "linear", "knn")}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in result["rows"])
    by_budget = {r["budget"]: r["n_labels"] for r in result["rows"]}
    assert by_budget["1"] == 10 and by_budget["5"] == 50 and by_budget["all"] > 1000
    for name in ("results.csv", "label_efficiency.png", "embedding_map.png", "report.html", "splits.json"):
        assert (study / name).stat().st_size > 0
    assert len((study / "results.csv").read_text().splitlines()) == len(result["rows"]) + 1
    assert {s["method"] for s in result["summary"]} == {"scratch", "simclr", "rotation"}
    assert {m["method"] for m in result["label_multipliers"]} == {"simclr", "rotation"}
    diag = result["diagnostics"]
    assert set(diag) == {"simclr", "rotation", "random weights (small-convnet)"}
    assert all(d["alignment"] >= 0 and d["uniformity"] <= 0 for d in diag.values())


def test_study_subsets_are_shared_balanced_and_test_is_held_out(study):
    splits = json.loads((study / "splits.json").read_text())
    test_keys = set(splits["test"])
    for seed in (0, 1):
        keys = (study / "subsets" / f"5-seed{seed}.txt").read_text().split()
        assert len(keys) == 50 and not test_keys & set(keys)
    assert (study / "subsets" / "5-seed0.txt").read_text() != (study / "subsets" / "5-seed1.txt").read_text()
    rows = json.loads((study / "results.json").read_text())["rows"]
    # Every method was scored on the same subsets: same label counts per budget and seed.
    counts = {(r["budget"], r["seed"]): set() for r in rows}
    for r in rows:
        counts[(r["budget"], r["seed"])].add(r["n_labels"])
    assert all(len(v) == 1 for v in counts.values())


def test_study_report_structure(study):
    parser = _Report()
    parser.feed((study / "report.html").read_text())
    assert parser.tables["accuracy"] == 1 + 2 * 3  # scratch + each method's three evaluations
    assert parser.tables["multipliers"] > 0 and parser.tables["diagnostics"] == 3 and parser.tables["environment"] > 3
    assert len(parser.images) == 2 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "http://" not in (study / "report.html").read_text() and "https://" not in (study / "report.html").read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().height]);
  const table = document.getElementById('accuracy');
  const rows = table ? [...table.tBodies[0].rows].map(r => r.cells[0].innerText) : [];
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({imgs, rows, tableHeight: table ? table.getBoundingClientRect().height : 0});
  document.body.appendChild(pre);
});
</script>"""


def rendered(report: Path, tmp_path: Path) -> dict:
    """What Chromium (Debian's package; .ci/run installs it) sees of ``report`` loaded offline: each image's
    natural width and height and shown height, the accuracy table's first column and its height."""
    browser = _chromium()
    assert browser, "chromium is needed for this test: apt-get install chromium (.ci/run does it)"
    page = tmp_path / "report.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    start = result.stdout.find('<pre id="probe">')
    assert start >= 0, result.stderr[-2000:]
    return json.loads(__import__("html").unescape(result.stdout[start + len('<pre id="probe">'):].split("</pre>")[0]))


def test_report_renders_in_a_headless_browser(study, tmp_path):
    """The page loads offline: the table has its rows and both figures decode to real images."""
    probe = rendered(study / "report.html", tmp_path)
    assert len(probe["imgs"]) == 2 and all(w > 300 and h > 200 and shown > 100 for w, h, shown in probe["imgs"])
    assert probe["tableHeight"] > 50 and probe["rows"].count("scratch") == 1
    assert {"simclr", "rotation"} <= set(probe["rows"])


def test_interrupted_study_resumes_to_the_same_results(study, tmp_path, monkeypatch, capsys):
    """SIGTERM the study after a few evaluations: it exits 143 with one line saying how to go on; the
    same command again finishes the rest, skips what was done, and ends with the rows an uninterrupted
    run wrote."""
    import os
    import signal

    out = tmp_path / "again"
    shutil.copytree(study / "pretrain", out / "pretrain")  # reuse the pretrained encoders
    from selfsup.study import run as study_run

    real, calls = study_run._frozen_score, {"n": 0}

    def dies_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # the real signal, through selfsup's handler
        return real(*args, **kwargs)

    (out / "study.json").write_text(json.dumps({"data": "digits", "labeled": "digits", "test": None}))
    monkeypatch.setattr(study_run, "_frozen_score", dies_after_three)
    args = ["study", *STUDY, "--methods", "simclr,rotation", "--config", _config(tmp_path), "--out", str(out)]
    assert main(args) == 143
    assert ("selfsup: stopped by SIGTERM; run the same command again to continue (finished work is kept)"
            in capsys.readouterr().err.splitlines())
    done = (out / "results.jsonl").read_text().splitlines()
    assert 3 <= len(done) < 35
    monkeypatch.setattr(study_run, "_frozen_score", real)
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 35 and rows[:len(done)] == [json.loads(line) for line in done]  # nothing redone
    expected = {(r["method"], r["evaluation"], r["budget"], r["seed"]): r["accuracy"]
                for r in json.loads((study / "results.json").read_text())["rows"]}
    got = {(r["method"], r["evaluation"], r["budget"], r["seed"]): r["accuracy"] for r in rows}
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(expected[k], abs=1e-6) for k in got)


def test_study_reuses_checkpoints_and_refuses_bad_input(study, tmp_path, capsys):
    out = tmp_path / "reuse"
    code = main(["study", "--labeled", "digits", "--methods", "", "--checkpoint", str(study / "pretrain" / "simclr"),
                 "--labels-per-class", "2", "--seeds", "1", "--evaluations", "linear,knn", "--quiet", "--json",
                 "--config", _config(tmp_path), "--out", str(out)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {(r["method"], r["evaluation"]) for r in result["rows"]} == {("simclr", "linear"), ("simclr", "knn")}
    assert not (out / "pretrain").exists()
    for args, message in ((["--evaluations", "linear,probe"], "unknown probe"),
                          (["--methods", "nope"], "unknown method 'nope'"),
                          (["--labels-per-class", "0"], "must be at least 1")):
        assert main(["study", "--data", "digits", *args, "--out", str(tmp_path / "bad"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
    # Another study's folder is refused rather than mixed.
    assert main(["study", "--data", "cifar10", "--methods", "simclr", "--out", str(out), "--quiet"]) == 2
    assert "holds a study of other data" in capsys.readouterr().err


def test_study_adds_semi_supervised_rows_from_random_and_pretrained_weights(study, tmp_path, capsys):
    """`--methods fixmatch,simclr+fixmatch`: FixMatch from random weights of SimCLR's architecture and from
    SimCLR's weights, on the same subsets, as rows of evaluation "semisup" with their own plot panel."""
    out = tmp_path / "semi"
    config = tmp_path / "semi.yaml"
    config.write_text(json.dumps({**CONFIG, "semisup_steps": 3, "semisup_batch_size": 8,
                                  "semisup_labels_per_class": "2"}))
    code = main(["study", "--labeled", "digits", "--methods", "fixmatch,simclr+fixmatch", "--checkpoint",
                 f"simclr={study / 'pretrain' / 'simclr'}", "--labels-per-class", "1,2", "--seeds", "1",
                 "--evaluations", "knn", "--quiet", "--json", "--config", str(config), "--out", str(out)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["method"], r["evaluation"], r["labels_per_class"]): r for r in result["rows"]}
    assert set(rows) == {("simclr", "knn", 1), ("simclr", "knn", 2), ("fixmatch", "semisup", 2),
                         ("simclr+fixmatch", "semisup", 2)}  # semi-supervised rows at their budgets only
    assert all(0 <= r["accuracy"] <= 1 and r["n_labels"] == 10 * r["labels_per_class"]
               and r["backbone"] == "small-convnet" for r in rows.values())
    assert "semi-supervised" in (out / "report.html").read_text()
    for methods, message in (("fixmatch", "add one"), ("simclr,nope+fixmatch", "nope is neither"),
                             ("simclr,simclr+mixmatch", "not a semi-supervised method")):
        assert main(["study", "--data", "digits", "--methods", methods, "--out", str(tmp_path / "bad"), "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_study_config_defaults_cover_the_issue():
    cfg = build_config(StudyConfig, {}, {})
    assert cfg.labels_per_class == "1,10,100,all" and cfg.seeds == 3
    assert cfg.evaluations.split(",") == ["scratch", "finetune", "linear", "knn"]
    assert np.isclose(cfg.val_fraction, 0.2)



def test_the_semi_supervised_demo_config_adds_its_rows_to_the_demo():
    """examples/demo_study_semisup.yaml (`demo --study --config`) builds on the embedded default: UDA,
    FixMatch and SimCLR + FixMatch rows at one of its budgets."""
    from importlib import resources

    import yaml

    from selfsup.data.splits import parse_labels_per_class

    values = yaml.safe_load(resources.files("selfsup").joinpath("configs/demo_study.yaml").read_text())
    values.update(yaml.safe_load((Path(__file__).parents[2] / "examples" / "demo_study_semisup.yaml").read_text())["study"])
    cfg = build_config(StudyConfig, values, {})
    assert {"uda", "fixmatch", "simclr+fixmatch", "simclr"} <= set(cfg.methods.split(","))
    assert parse_labels_per_class(cfg.semisup_labels_per_class) == [10]
    assert 10 in parse_labels_per_class(cfg.labels_per_class)


def test_study_baselines_add_a_published_weights_row_beside_scratch(study, tmp_path, capsys):
    """`--baselines scratch,FILE`: the encoder's architecture with the file's weights, fine-tuned on the same
    subsets as scratch (ImageNet's weights take the same path, from the torch cache: tests/backbones)."""
    from safetensors.torch import load_file

    encoder = study / "pretrain" / "simclr"
    torch.save(load_file(str(encoder / "encoder.safetensors")), tmp_path / "published.pth")
    out = tmp_path / "baselines"
    code = main(["study", "--labeled", "digits", "--methods", "", "--checkpoint", str(encoder), "--labels-per-class",
                 "2", "--seeds", "1", "--evaluations", "scratch,knn", "--baselines", f"scratch,{tmp_path / 'published.pth'}",
                 "--quiet", "--json", "--config", _config(tmp_path), "--out", str(out)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["method"], r["evaluation"]): r for r in result["rows"]}
    assert set(rows) == {("scratch", "scratch"), ("weights published", "finetune"), ("simclr", "knn")}
    assert rows[("weights published", "finetune")]["n_labels"] == rows[("scratch", "scratch")]["n_labels"] == 20
    assert {m["method"] for m in result["label_multipliers"]} >= {"weights published"}
    assert main(["study", "--labeled", "digits", "--methods", "simclr", "--baselines", "scratch,nowhere.pth",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "neither scratch, imagenet nor a weights file" in capsys.readouterr().err
