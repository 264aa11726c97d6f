"""Checked configuration: every bad setting stops the command with exit 2 and one line naming it."""
from __future__ import annotations

import dataclasses
import typing
from typing import Literal, Optional

import pytest

from selfsup.cli import build_parser, main
from selfsup.config import (RETIRED, EvalConfig, ExportConfig, FinetuneConfig, PredictConfig, PretrainConfig, Range,
                            SemisupConfig, StudyConfig, TrainConfig, build_config, convert)
from selfsup.utils.errors import ConfigError

PRETRAIN = ["pretrain", "--data", "digits", "--backbone", "small-convnet", "--steps", "2", "--batch-size", "32"]
FINETUNE = ["finetune", "--checkpoint", "unused", "--labeled", "digits"]
SEMISUP = ["semisup", "--labeled", "digits", "--backbone", "small-convnet", "--steps", "2"]

# (command line, YAML config or None, what the one-line error must name)
BAD = [
    # the rows a new user hit, each of which used to crash (or pass silently)
    (PRETRAIN + ["--batch-size", "0"], None, "batch_size"),
    (PRETRAIN + ["--method-arg", "temperature=abc"], None, "temperature"),
    (PRETRAIN + ["--method-arg", "projection_dim=1.5"], None, "projection_dim"),
    (PRETRAIN, "checkpoint_every: 0", "checkpoint_every"),
    (PRETRAIN, "precision: fp16", "precision"),
    (PRETRAIN, "knn_every: 1", "knn_every"),
    # one per kind of setting
    (PRETRAIN, "strict: maybe", "strict"),  # bool
    (PRETRAIN + ["--seed", "x"], None, "seed"),  # int
    (PRETRAIN + ["--steps", "2.5"], None, "steps"),  # int, not a float
    (PRETRAIN + ["--lr", "-1"], None, "lr"),  # positive float
    (PRETRAIN + ["--warmup-fraction", "1"], None, "warmup_fraction"),  # [0, 1)
    (PRETRAIN, "time_limit: 0", "time_limit"),  # optional positive float
    (PRETRAIN, "stem: huge", "stem"),  # Literal
    (PRETRAIN, "optimizer: adam", "optimizer"),  # optional Literal
    (PRETRAIN, "method_args: 5", "method_args"),  # dict
    (PRETRAIN + ["--method-arg", "queue=1"], None, "queue"),  # an argument the method does not take
    (PRETRAIN + ["--momentum", "1.5"], None, "momentum"),
    (FINETUNE, "lr_grid: [0.1, x]", "lr_grid"),  # list of floats
    (FINETUNE, "lr_grid: [0.1, -0.1]", "lr_grid"),  # each in range
    (FINETUNE + ["--seeds", "0"], None, "seeds"),
    (FINETUNE + ["--head-init", "zeros"], None, "head_init"),
    (FINETUNE + ["--val-fraction", "1"], None, "val_fraction"),
    (FINETUNE + ["--label-fraction", "0"], None, "label_fraction"),
    (["eval", "knn", "--checkpoint", "unused", "--k", "0"], None, "k"),
    (SEMISUP + ["--unlabeled-ratio", "-1"], None, "unlabeled_ratio"),
    (SEMISUP + ["--method-arg", "threshold=high"], None, "threshold"),
    (SEMISUP, "ema_decay: 1.0", "ema_decay"),
    (["study", "--data", "digits", "--finetune-steps", "0"], None, "finetune_steps"),
]


@pytest.mark.parametrize("argv, yaml_text, setting", BAD, ids=[row[2] + str(i) for i, row in enumerate(BAD)])
def test_a_bad_setting_exits_2_with_one_line_naming_it(argv, yaml_text, setting, tmp_path, capsys):
    args = [*argv, "--out", str(tmp_path / "out")] if argv[0] != "eval" else list(argv)
    if yaml_text is not None:
        (tmp_path / "c.yaml").write_text(yaml_text + "\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own usage errors (a flag's type or choices)
        code = exc.code
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and setting.replace("_", "-") in err[0].replace("_", "-"), err


CONFIGS = {"pretrain": PretrainConfig, "eval": EvalConfig, "finetune": FinetuneConfig, "study": StudyConfig,
           "semisup": SemisupConfig, "train": TrainConfig, "predict": PredictConfig, "export": ExportConfig}


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_every_setting_has_a_flag_and_every_flag_a_setting(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    dests = {a.dest for a in parser._actions} - {"help", "command", "config", "json", "quiet", "protocol", "devices",
                                                 "nodes"}
    hints = typing.get_type_hints(CONFIGS[command])
    fields = {f.name for f in dataclasses.fields(CONFIGS[command])}
    yaml_only = {name for name in fields if "dict" in str(hints[name])}  # mappings: method_args, view_args, ...
    assert dests - fields == set() and fields - yaml_only - dests == set()


def test_convert_reads_each_annotation_and_names_the_setting():
    assert convert("3", int, "x") == 3 and convert(3.0, int, "x") == 3 and convert("0.5", float, "x") == 0.5
    assert convert("off", bool, "x") is False and convert("a", Optional[Literal["a", "b"]], "x") == "a"
    assert convert([1, "2"], tuple[float, float], "x") == (1.0, 2.0) and convert("1,2", list[float], "x") == [1.0, 2.0]
    assert convert(None, int, "x") is None and convert("7", int | None, "x") == 7
    assert convert(5, int | str, "x") == 5 and convert("abc", int | str, "x") == "abc"
    for value, hint in (("1.5", int), (True, int), ("c", Literal["a", "b"]), ([1], tuple[float, float]),
                        ({"a": 1}, str), ("x", float | None)):
        with pytest.raises(ConfigError, match="^setting"):
            convert(value, hint, "setting")


def test_ranges_describe_themselves_and_hold_their_bounds():
    assert str(Range(1)) == "at least 1" and str(Range(0, open_low=True)) == "positive"
    assert str(Range(0, 1, open_high=True)) == "in [0, 1)"
    assert 0 in Range(0, 1, open_high=True) and 1 not in Range(0, 1, open_high=True)
    assert float("nan") not in Range(0)


def test_settings_are_checked_wherever_a_config_is_built():
    with pytest.raises(ConfigError, match="batch_size must be at least 1, got 0"):
        PretrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        dataclasses.replace(SemisupConfig(), checkpoint_every=0)
    assert build_config(PretrainConfig, {"precision": "bf16"}, {"steps": "3"}).steps == 3


def test_a_saved_run_with_a_retired_setting_still_reads_back(tmp_path):
    from selfsup.config import saved_config

    assert "knn_every" in RETIRED
    (tmp_path / "config.yaml").write_text("method: byol\nknn_every: 0\nsteps: 4\n")
    cfg = saved_config(PretrainConfig, tmp_path / "config.yaml")
    assert (cfg.method, cfg.steps) == ("byol", 4) and not hasattr(cfg, "knn_every")
