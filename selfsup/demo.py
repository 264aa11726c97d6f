"""``selfsup demo``: pretrain SimCLR on digits, then fine-tune vs scratch, in a few minutes on a CPU."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import yaml

from .config import FinetuneConfig, PretrainConfig, build_config, load_yaml


def run_demo(out: str = "selfsup-demo", config: str | None = None, progress: bool = True) -> dict:
    started = time.perf_counter()
    values = yaml.safe_load(resources.files("selfsup").joinpath("configs/demo.yaml").read_text())
    if config:
        user = load_yaml(config)
        for section in ("pretrain", "finetune"):
            values[section].update(user.get(section, {}))
    root = Path(out)
    from .engine.trainer import pretrain
    from .evaluate.run import run_finetune

    pre_cfg = build_config(PretrainConfig, values["pretrain"], {"out": str(root / "pretrain"), "overwrite": True})
    pre = pretrain(pre_cfg, progress=progress)
    ft_cfg = build_config(FinetuneConfig, values["finetune"],
                          {"checkpoint": str(root / "pretrain"), "labeled": pre_cfg.data, "out": str(root / "finetune"),
                           "overwrite": True})
    ft = run_finetune(ft_cfg, progress=progress)
    return {"rows": ft["rows"], "pretrain": pre, "seconds": round(time.perf_counter() - started, 3), "out": str(root)}


def run_demo_study(out: str = "selfsup-study", config: str | None = None, progress: bool = True) -> dict:
    """``selfsup demo --study``: the label-efficiency study on digits (configs/demo_study.yaml)."""
    from .config import StudyConfig
    from .study.run import run_study

    values = yaml.safe_load(resources.files("selfsup").joinpath("configs/demo_study.yaml").read_text())
    if config:
        values.update(load_yaml(config).get("study", {}))
    cfg = build_config(StudyConfig, values, {"out": out, "overwrite": True})
    return run_study(cfg, progress=progress)
