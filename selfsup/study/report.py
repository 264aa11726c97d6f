"""report.html: one self-contained page (images inlined as data URIs, no scripts, no network)."""
from __future__ import annotations

import base64
import html
import platform
import sys
from pathlib import Path
from typing import Any

import yaml

from .plots import EVALUATION_TITLES
from .results import EVALUATIONS, Summary

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
"""


def environment(device: str) -> dict[str, str]:
    """Library versions and the device, for the report's reproducibility section."""
    import numpy
    import sklearn
    import torch
    import torchvision

    from .. import __version__

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"selfsup": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
            "platform": platform.platform(), "device": device, "CUDA device": cuda,
            "CPU threads": str(torch.get_num_threads())}


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]], table_id: str) -> str:
    head = "".join(f'<th class="{"name" if i == 0 else ""}">{html.escape(str(h))}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"name" if i == 0 else ""}">{html.escape(str(c))}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _accuracy_table(summary: list[Summary], dense: bool = False) -> str:
    budgets = sorted({(s.n_labels, s.budget) for s in summary})
    columns = []
    for n, budget in budgets:
        if (budget, n) not in [(c[0], c[1]) for c in columns]:
            columns.append((budget, n))
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for s in summary:
        cells.setdefault((s.method, s.evaluation), {})[s.budget] = (
            f"{100 * s.mean:.1f} ± {100 * s.std:.1f}" if s.seeds > 1 else f"{100 * s.mean:.1f}")
    order = {e: i for i, e in enumerate(EVALUATIONS)}
    keys = sorted(cells, key=lambda k: (k[0] != "scratch" and not k[0].startswith("scratch"), k[0], order.get(k[1], 9)))
    if dense:
        header = ["method", "evaluation"] + [f"{n} image{'s' if n != 1 else ''}" if b != "all" else f"all ({n})"
                                             for b, n in columns]
    else:
        header = ["method", "evaluation"] + [f"{b} / class ({n})" if b != "all" else f"all ({n})" for b, n in columns]
    rows = [[m, EVALUATION_TITLES.get(e, "trained from random weights" if e == "scratch" else e)]
            + [cells[(m, e)].get(b, "–") for b, _ in columns] for m, e in keys]
    return _table(header, rows, "accuracy")


def _segmentation_parts(payload: dict[str, Any], overlays: Path | None) -> list[str]:
    """Per-class IoU and the overlays of a segmentation study."""
    parts = []
    per_class = payload.get("per_class_iou", [])
    if per_class:
        classes = per_class[0]["classes"]
        parts.append("<h2>IoU per class</h2><p class='note'>Test IoU (%) of each class (named by its mask "
                     "value), mean ± std over seeds.</p>")
        rows = [[p["method"], p["evaluation"], p["budget"]]
                + [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(p["iou"], p["iou_std"])] for p in per_class]
        parts.append(_table(["method", "evaluation", "labeled images"] + [f"IoU {c}" for c in classes], rows,
                            "per-class"))
    if overlays is not None and overlays.exists():
        parts.append("<h2>Predicted masks</h2><p class='note'>Test images, their true masks and each model's "
                     "prediction at the smallest budget (seed 0), with each image's mean IoU.</p>")
        parts.append(_image(overlays, "test images, true masks and predicted masks"))
    return parts


def write_report(out: Path, payload: dict[str, Any], summary: list[Summary], config: dict[str, Any],
                 title: str = "selfsup study", task: str = "classification", overlays: Path | None = None) -> Path:
    """Write OUT/report.html from the study's results (``payload`` as in results.json) and figures."""
    dense = task == "segmentation"
    if dense:
        note = (f"Test mean IoU (%) over every pixel of whole test images (sliding windows), on a held-out set "
                f"that no step trains or tunes on: {html.escape(str(payload.get('test_set', '')))}. Mean ± std "
                f"over seeds; the same labeled images for every row (picked by seed).")
    else:
        note = (f"Test accuracy (%) on a held-out set that no step trains or tunes on: "
                f"{html.escape(str(payload.get('test_set', '')))}. Mean ± std over seeds; the same class-balanced "
                f"labeled subsets for every method (saved under <code>subsets/</code>).")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>{note}</p>",
             "<h2>Mean IoU against labeled images</h2>" if dense else "<h2>Accuracy against labels</h2>",
             _accuracy_table(summary, dense)]
    figure = out / "label_efficiency.png"
    if figure.exists():
        parts.append(_image(figure, "test score against number of labels"))
    if dense:
        parts += _segmentation_parts(payload, overlays)
    multipliers = payload.get("label_multipliers", [])
    if multipliers:
        parts.append("<h2>Label multiplier</h2><p class='note'>How many labels training from scratch would need "
                     "for the same test score (interpolated on its curve, log labels), over the labels used. "
                     "&gt;: scratch never got there in the budgets run; &lt;: its smallest budget already did.</p>")
        rows = [[m["method"], m["evaluation"], m["budget"], m["n_labels"], f"{100 * m['accuracy']:.1f}",
                 f"{m['relation'] if m['relation'] != '=' else ''}{m['scratch_labels_needed']:g}",
                 f"{m['relation'] if m['relation'] != '=' else ''}{m['multiplier']:.2f}×"] for m in multipliers]
        parts.append(_table(["method", "evaluation", "budget", "labeled images" if dense else "labels",
                             "mean IoU" if dense else "accuracy", "scratch needs", "multiplier"], rows, "multipliers"))
    diagnostics = payload.get("diagnostics", {})
    if diagnostics:
        parts.append("<h2>Checkpoint diagnostics</h2><p class='note'>On test images: embedding std·√d (healthy ≈ 1, "
                     "collapsed ≈ 0), effective rank, and Wang &amp; Isola's alignment and uniformity (both lower "
                     "is better; positive pairs from one fixed augmentation for every method).</p>")
        rows = [[name, d.get("embedding_std_x_sqrt_d"), d.get("effective_rank"), d.get("alignment"),
                 d.get("uniformity"), d.get("feature_dim")] for name, d in diagnostics.items()]
        parts.append(_table(["checkpoint", "std·√d", "effective rank", "alignment", "uniformity", "dim"], rows,
                            "diagnostics"))
    maps = out / "embedding_map.png"
    if maps.exists():
        parts.append("<h2>Embedding maps</h2>" + _image(maps, "t-SNE of test-set embeddings"))
    timings = payload.get("timings", {})
    if timings:
        parts.append("<h2>Timings</h2>")
        parts.append(_table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()], "timings"))
    parts.append("<h2>Configuration</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>")
    env = payload.get("environment", {})
    if env:
        parts.append("<h2>Environment</h2>" + _table(["", "version"], [[k, v] for k, v in env.items()], "environment"))
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


__all__ = ["write_report", "environment"]
