"""``selfsup export``: a saved model as ONNX or TorchScript, loadable without selfsup, with its preprocessing.

ONNX goes through ``torch.onnx.export`` (the ``torch.export`` based exporter) with a dynamic batch axis;
TorchScript through ``torch.jit.trace``. Each file is checked once written: ONNX Runtime (or the loaded
TorchScript module) runs a batch of 7 and its logits are compared with PyTorch's; the largest difference
is recorded in model.json beside the file's name, opset and input/output names. The preprocessing the
file expects its input to have had (resize, crops, scale, normalization) is written to preprocessing.json.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import ExportConfig
from ..utils.checkpoint import atomic_write_text
from ..utils.errors import ConfigError, SelfSupError
from .model import INFO, DensePreprocessing, DownstreamModel, SegmentationModel, load_model

log = logging.getLogger("selfsup")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
CHECK_BATCH = 7  # an odd batch that is not the traced one: the batch axis must really be dynamic


def check_batch(model: DownstreamModel, batch: int = CHECK_BATCH, seed: int = 0) -> torch.Tensor:
    """A seeded batch of inputs in the model's normalized input space."""
    p = model.preprocess
    side = p.window if isinstance(p, DensePreprocessing) else p.image_size
    return torch.randn(batch, p.channels, side, side, generator=torch.Generator().manual_seed(seed))


def export_onnx(model: DownstreamModel, path: Path, opset: int | None = None) -> dict[str, Any]:
    """``model`` as an ONNX file with input ``images`` and output ``logits``, the batch axis dynamic."""
    example = check_batch(model, 2)
    batch = torch.export.Dim("batch", min=1)
    axes = {0: batch}
    if isinstance(model, SegmentationModel):  # a fully convolutional model reads any image size
        axes.update({2: torch.export.Dim("height", min=32), 3: torch.export.Dim("width", min=32)})
    with contextlib.redirect_stdout(sys.stderr), _quiet_loggers("onnxscript", "onnx_ir"):  # the exporter's chatter
        torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"images": axes} if isinstance(model, SegmentationModel) else {"x": axes}, dynamo=True, opset_version=opset, external_data=False,
                          verbose=False)
    import onnx

    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    used = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(used), "difference": _onnx_difference(model, path)}


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The named libraries' info lines held back (warnings still show) while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnx_difference(model: DownstreamModel, path: Path) -> float | None:
    """Largest |logit difference| between ONNX Runtime and PyTorch on a check batch (None without it)."""
    try:
        import onnxruntime
    except ImportError:
        log.warning("onnxruntime is not installed: the exported file is not checked (pip install 'selfsup[export]')")
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = check_batch(model)
    theirs = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
    with torch.no_grad():
        return float((theirs - model(x)).abs().max())


def export_torchscript(model: DownstreamModel, path: Path) -> dict[str, Any]:
    """``model`` traced to TorchScript (``torch.jit.load`` reads it without selfsup)."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, yet its files are what TorchScript servers load
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, check_batch(model, 2), check_trace=False).save(str(path))
        loaded = torch.jit.load(str(path))
        x = check_batch(model)
        return {"opset": None, "difference": float((loaded(x) - model(x)).abs().max())}


def run_export(cfg: ExportConfig) -> dict:
    """Export the model in ``cfg.model``; record the file in its model.json, preprocessing beside it."""
    if not cfg.model:
        raise ConfigError("export needs --model (a model folder)")
    folder = Path(cfg.model)
    model = load_model(folder)
    path = Path(cfg.out) if cfg.out else folder / f"model{SUFFIX[cfg.format]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        made = export_onnx(model, path, cfg.opset) if cfg.format == "onnx" else export_torchscript(model, path)
    except ImportError as exc:
        raise SelfSupError(f"export --format onnx needs the onnx package: pip install 'selfsup[export]' ({exc})") from None
    dense = isinstance(model, SegmentationModel)
    record = {"file": str(path.resolve()), "format": cfg.format, "opset": made["opset"], "input_name": "images",
              "output_name": "logits",
              "dynamic_axes": {"images": [0, 2, 3], "logits": [0, 2, 3]} if dense else {"images": [0], "logits": [0]},
              "max_abs_difference": made["difference"]}
    preprocessing = {**model.info["preprocessing"], "classes": model.classes, "input_name": "images",
                     "output_name": "logits"}
    atomic_write_text(path.parent / "preprocessing.json", json.dumps(preprocessing, indent=1))
    info = {**model.info, "exports": {**model.info.get("exports", {}), cfg.format: record}}
    atomic_write_text(folder / INFO, json.dumps(info, indent=1))
    if made["difference"] is not None and made["difference"] > 1e-3:
        log.warning("the exported model's logits differ from PyTorch's by up to %.2g", made["difference"])
    return {**record, "preprocessing": str(path.parent / "preprocessing.json")}
