"""Recipes resolved against the run: schedules the papers give in epochs, queues against the pool, the
settings a short run was measured to need; an explicit value always wins."""
from __future__ import annotations

import logging

import pytest
import yaml

from selfsup.config import PretrainConfig
from selfsup.engine import trainer
from selfsup.engine.build import budget_warning, resolve_recipe
from selfsup.methods import METHODS
from selfsup.methods.base import RunBudget
from selfsup.methods.queues import queue_for_pool

from conftest import run_cli

CIFAR_SHORT = RunBudget(steps=1350, batch_size=256, n_images=50_000)  # 6.9 epochs
IMAGENET_LONG = RunBudget(steps=200 * 5004, batch_size=256, n_images=1_281_167)  # 200 epochs


def test_a_short_cifar_run_gets_the_measured_settings_and_epoch_schedules_in_its_steps():
    cfg, lines = resolve_recipe(PretrainConfig(method="swav"), CIFAR_SHORT)
    assert cfg.method_args == {"freeze_prototypes_steps": 195, "queue_start_step": 2925, "epsilon": 0.01}
    assert cfg.view_args == {"local_crops": 0}
    assert len(lines) == 3 and "epoch 15" in lines[1]
    cfg, _ = resolve_recipe(PretrainConfig(method="moco_v2"), CIFAR_SHORT)
    assert cfg.method_args == {"queue_size": 32768, "symmetric": True, "projection_dim": 256, "momentum": 0.99}
    assert (cfg.lr, cfg.warmup_fraction) == (0.3, 0.1)
    for method, width in (("barlow_twins", "projection_dim"), ("vicreg", "projection_dim"), ("dino", "out_dim")):
        assert resolve_recipe(PretrainConfig(method=method), CIFAR_SHORT)[0].method_args[width] < 8192, method
        assert width not in (resolve_recipe(PretrainConfig(method=method), IMAGENET_LONG)[0].method_args or {}), method
    for method, args in (("byol", {"predictor_lr_scale": 10.0}), ("simsiam", {"predictor_lr_scale": 10.0}),
                         ("pirl", {"loss_type": "infonce"}), ("directpred", {}), ("simclr", {})):
        assert (resolve_recipe(PretrainConfig(method=method), CIFAR_SHORT)[0].method_args or {}) == args, method


def test_a_long_imagenet_run_keeps_the_papers_values():
    for method in ("byol", "simsiam", "pirl"):
        assert resolve_recipe(PretrainConfig(method=method), IMAGENET_LONG) == (PretrainConfig(method=method), [])
    cfg, _ = resolve_recipe(PretrainConfig(method="moco_v2"), IMAGENET_LONG)
    assert cfg.method_args == {"queue_size": 65536} and cfg.lr is None
    cfg, _ = resolve_recipe(PretrainConfig(method="swav"), IMAGENET_LONG)
    assert cfg.method_args == {"freeze_prototypes_steps": 5004, "queue_start_step": 15 * 5004} and not cfg.view_args
    cfg, _ = resolve_recipe(PretrainConfig(method="dino"), IMAGENET_LONG)
    assert cfg.method_args == {"freeze_last_layer_steps": 5004}  # 65,536 prototypes for ImageNet's pool


def test_explicit_values_win_and_are_named_beside_the_recipes():
    given = PretrainConfig(method="swav", method_args={"epsilon": 0.05}, view_args={"local_crops": 6}, lr=1.0)
    cfg, lines = resolve_recipe(given, CIFAR_SHORT)
    assert cfg.method_args["epsilon"] == 0.05 and cfg.view_args == {"local_crops": 6}
    assert any(line.startswith("epsilon=0.05 as given (the recipe's 0.01") for line in lines)
    cfg, lines = resolve_recipe(PretrainConfig(method="moco_v2", lr=0.03, method_args={"symmetric": False}), CIFAR_SHORT)
    assert cfg.lr == 0.03 and cfg.method_args["symmetric"] is False and cfg.warmup_fraction == 0.1
    assert any(line.startswith("--lr=0.03 as given") for line in lines)
    # A value equal to the recipe's (a resumed run's saved config) says nothing.
    resolved, _ = resolve_recipe(PretrainConfig(method="swav"), CIFAR_SHORT)
    assert resolve_recipe(resolved, CIFAR_SHORT) == (resolved, [])


@pytest.mark.parametrize("pool,expected", [(50_000, 32768), (1_281_167, 65536), (11_250, 8192), (100, 64), (1, 1)])
def test_the_queue_is_no_longer_than_the_pool(pool, expected):
    assert queue_for_pool(pool, 65536) == expected


def test_a_run_shorter_than_the_measured_minimum_is_told_so():
    assert budget_warning("byol", CIFAR_SHORT) is None  # 345,600 images seen: the minimum itself
    short = budget_warning("byol", RunBudget(steps=450, batch_size=256, n_images=50_000))
    assert short is not None and "345,600" in short and "115,200" in short
    assert budget_warning("simclr", RunBudget(steps=450, batch_size=256, n_images=50_000)) is None
    assert "linear probe" in budget_warning("corruption", CIFAR_SHORT)
    assert budget_warning("densecl", CIFAR_SHORT) is None  # not measured on CIFAR-10: nothing to say
    for name in METHODS.names():  # every registered method answers for any budget
        METHODS.get(name).for_budget(CIFAR_SHORT)


def test_pretrain_prints_the_resolved_recipe_and_saves_it(tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="selfsup"):
        done = run_cli("pretrain", "--method", "byol", "--data", "digits", "--backbone", "small-convnet",
                       "--views", "small-gray", "--batch-size", "32", "--steps", "2", "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "predictor_lr_scale=10.0: a short run" in caplog.text
    assert "byol was measured to beat random weights only from 345,600 images seen" in caplog.text
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method_args"]["predictor_lr_scale"] == 10.0


def test_a_time_limited_run_is_rebuilt_when_its_step_count_changes_the_recipe(tmp_path, monkeypatch, caplog):
    """Built for the shortest run first (a fast predictor); timed at 1,000 epochs of the pool, it is
    rebuilt with the paper's predictor rate, and the optimizer's groups follow."""
    from selfsup.utils.distributed import DistContext

    monkeypatch.setattr(trainer, "steps_in_time", lambda *args: 1000 * 1438 // 32)
    cfg = PretrainConfig(method="byol", data="digits", backbone="small-convnet", views="small-gray", batch_size=32,
                         time_limit=60.0, out=str(tmp_path / "run"))
    run = trainer.PretrainRun.build(cfg, tmp_path / "run", DistContext(), trainer.torch.device("cpu"), 0.0, False)
    assert run.cfg.method_args["predictor_lr_scale"] == 1.0 and run.method.lr_scale == {}
    assert not any("lr_scale" in group for group in run.optimizer.param_groups)
