"""Checkpoints: safetensors for tensors, JSON for the rest, each written atomically.

``checkpoints/step-000120.safetensors`` holds the method's parameters and buffers
(``model/...``) and the optimizer's tensors (``optim/<param index>/<name>``);
``step-000120.json`` holds the step, the optimizer's hyper-parameters and metadata;
``checkpoints/latest.json`` points at the newest complete pair and is written last, so a run
killed while writing leaves the previous checkpoint intact.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from .errors import SelfSupError

log = logging.getLogger("selfsup")
KEEP_LAST = 2


class WriteError(SelfSupError):
    """A file of the run could not be written (disk full, permission denied, read-only folder); what was
    there before is untouched."""


@contextlib.contextmanager
def _written_atomically(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write, moved over ``path`` only once complete: a failed or killed
    write leaves the previous file as it was, and the failure is one line naming the file and the OS error."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        why = f"{exc.strerror} (errno {exc.errno})" if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WriteError(f"cannot write {path}: {why}; the previous files are kept") from exc


def atomic_write_text(path: Path, text: str) -> None:
    with _written_atomically(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    with _written_atomically(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{name}"] = value
            else:
                scalars[f"{index}/{name}"] = value
    return tensors, scalars


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:06d}"
    opt_state = optimizer.state_dict()
    tensors, scalars = _optimizer_tensors(opt_state)
    tensors.update({f"model/{k}": v for k, v in model.state_dict().items()})
    atomic_save_tensors(tensors, folder / f"{stem}.safetensors")
    groups = [{k: v for k, v in g.items()} for g in opt_state["param_groups"]]
    record = {"step": step, "optimizer": {"param_groups": groups, "scalars": scalars}, **meta}
    atomic_write_text(folder / f"{stem}.json", json.dumps(record, indent=1))
    atomic_write_text(folder / "latest.json", json.dumps({"step": step, "file": f"{stem}.safetensors"}))
    _prune(folder, keep=KEEP_LAST)
    return folder / f"{stem}.safetensors"


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(folder.glob("step-*.safetensors"))
    for old in steps[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / "latest.json"
    if not pointer.exists():
        return None
    try:
        path = folder / json.loads(pointer.read_text())["file"]
    except (ValueError, KeyError) as exc:
        raise SelfSupError(f"corrupt checkpoint pointer {pointer}: {exc}") from exc
    if not path.exists():
        raise SelfSupError(f"checkpoint {path} named by {pointer} is missing")
    return path


def readable_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint in ``folder`` that reads back whole: the one ``latest.json`` names, or, when
    that one (or the pointer) is truncated or unreadable, the newest older one kept, with a warning."""
    try:
        named = latest_checkpoint(folder)
    except SelfSupError as exc:
        log.warning("%s", exc)
        named = None
    candidates = ([named] if named is not None else []) + sorted(
        (p for p in folder.glob("step-*.safetensors") if p != named), reverse=True)
    for path in candidates:
        try:
            read_checkpoint(path)
        except SelfSupError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
            continue
        if path != named and named is not None:
            log.warning("resuming from the previous checkpoint %s instead", path)
        return path
    if candidates:
        raise SelfSupError(f"no readable checkpoint in {folder} (tried {', '.join(p.name for p in candidates)})")
    return None


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        tensors = load_file(str(path))
        meta = json.loads(path.with_suffix(".json").read_text())
    except Exception as exc:
        raise SelfSupError(f"cannot read checkpoint {path}: {exc}") from exc
    return tensors, meta


def restore(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Load model (and optimizer) state from a checkpoint; returns its JSON record."""
    tensors, meta = read_checkpoint(path)
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(model_state, strict=True)
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        for key, value in meta["optimizer"]["scalars"].items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    return meta
