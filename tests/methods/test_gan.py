"""GANs (issue 11): the adversarial losses against their formulas, the players' turns, spectral norm,
the failure watch, and DCGAN / BiGAN trained, saved, resumed and transferred on real digits."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from selfsup.methods.base import method_defaults
from selfsup.backbones import build_backbone
from conftest import run_cli
from selfsup.backbones.io import load_backbone
from selfsup.backbones.spectral import bake_spectral_norm
from selfsup.engine.optim import build_method_optimizer
from selfsup.engine.loop import Loop
from selfsup.engine.trainer import method_turns, pretrain_forward
from selfsup.losses import discriminator_loss, generator_loss, r1_penalty
from selfsup.methods import METHODS
from selfsup.views import Normalization, Views

NORM = Normalization([0.5] * 3, [0.25] * 3)
GAN_METHODS = [n for n in METHODS.names() if METHODS.get(n).players]
SMALL = {"latent_dim": 16, "generator_width": 16}


def _turn_step(method, optimizer, images, generator):
    """One step of the engine's loop, one turn per player: (summed loss, embedding, scalars)."""
    forward = pretrain_forward(method, None, False, torch.device("cpu"))
    loop = Loop(optimizer, 1, lambda step: 0.0, 0.0, turns=method_turns(method, optimizer))
    result = loop.step(lambda step, batch, logging, player: forward(images, None, generator, player), 0)
    return result.reported, result.embedding, result.scalars


def make(name: str, size: int = 16, backbone: str | None = None, **overrides):
    torch.manual_seed(0)
    cls = METHODS.get(name)
    args = {**method_defaults(cls), **SMALL, **overrides}
    return cls(build_backbone(backbone or cls.recipe.backbone, 3, "small", size), Views.preset("gan", size, NORM), **args)


def real_slice(n: int = 32, size: int = 16) -> torch.Tensor:
    """Real digits (sklearn's bundled 8 x 8 images) upsampled to RGB ``size`` x ``size`` uint8."""
    from sklearn.datasets import load_digits

    digits = torch.tensor(load_digits().images[:n], dtype=torch.float32)[:, None] / 16
    images = nn.functional.interpolate(digits, size=(size, size), mode="bilinear", align_corners=False)
    return (images.clamp(0, 1) * 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def test_gan_losses_equal_their_formulas_in_float64():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(7, generator=g, dtype=torch.float64) * 3, torch.randn(5, generator=g, dtype=torch.float64) * 3
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected_d = (-sum(math.log(sigmoid(r)) for r in real.tolist()) / 7
                  - sum(math.log(1 - sigmoid(f)) for f in fake.tolist()) / 5)
    expected_g = -sum(math.log(sigmoid(f)) for f in fake.tolist()) / 5  # non-saturating: -log D(G(z))
    assert discriminator_loss(real, fake).item() == pytest.approx(expected_d, abs=1e-6)
    assert generator_loss(fake).item() == pytest.approx(expected_g, abs=1e-6)
    # a standoff (every logit 0) costs 2 log 2; swapping the roles and the signs changes nothing
    assert discriminator_loss(torch.zeros(3), torch.zeros(4)).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert discriminator_loss(-fake, -real).item() == pytest.approx(expected_d, abs=1e-6)
    # saturated logits stay finite (softplus, not log of a sigmoid)
    assert torch.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_weight_norm():
    torch.manual_seed(0)
    critic = nn.Linear(12, 1)
    x = torch.randn(6, 3, 2, 2, requires_grad=True)
    penalty = r1_penalty(critic(x.flatten(1)).squeeze(1), x)
    assert penalty.item() == pytest.approx(critic.weight.pow(2).sum().item(), rel=1e-6)
    penalty.backward()  # create_graph: the penalty trains D, d‖w‖²/dw = 2w
    torch.testing.assert_close(critic.weight.grad, 2 * critic.weight.detach())


@pytest.mark.parametrize("name", GAN_METHODS)
def test_each_player_trains_only_its_own_parameters_and_each_loss_falls(name):
    """D's loss falls when D alone trains against a fixed G, G's falls against a fixed D; D's loss gives G
    no gradient; the engine's turn steps every player's parameters, the EMA generator by no gradient."""
    method, images = make(name), real_slice()
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731 (fixed views and latents)
    groups = {p: set(map(id, method.player_modules(p).parameters())) for p in method.players}
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert set.union(*groups.values()) == trainable and not set.intersection(*groups.values())
    assert all(not p.requires_grad for p in method.ema_generator.parameters())

    out = method(images, generator(), player="discriminator")
    out["loss"].backward()
    assert all(p.grad is not None for p in method.player_modules("discriminator").parameters())
    assert all(p.grad is None for p in method.generator.parameters())  # G(z) detached for D's turn
    assert out["embedding"].shape[0] == len(images) and 0 < out["diversity"]

    for player in method.players:
        trial = make(name)
        optimizer = torch.optim.Adam(trial.player_modules(player).parameters(), lr=1e-3)
        losses = []
        for _ in range(8):
            loss = trial(images, generator(), player=player)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert sum(losses[-3:]) / 3 < losses[0], (player, losses)

    optimizer = build_method_optimizer("adamw", method, 1e-3, 0.0, betas=(0.5, 0.999))
    before = {n: p.detach().clone() for n, p in method.named_parameters()}
    loss, embedding, extras = _turn_step(method, optimizer, images, generator())
    moved = {n for n, p in method.named_parameters() if not torch.equal(p, before[n])}
    assert torch.isfinite(loss) and {"d_loss", "g_loss", "d_real", "d_fake", "diversity"} <= set(extras)
    assert {n for n, p in method.named_parameters() if p.requires_grad and p.ndim > 1} <= moved
    assert all(p.requires_grad for n, p in method.named_parameters() if not n.startswith("ema_generator"))


def test_turn_optimizers_state_round_trips_like_one_optimizer():
    method, images = make("dcgan"), real_slice(16)
    optimizer = build_method_optimizer("adamw", method, 1e-3, 0.0)
    _turn_step(method, optimizer, images, torch.Generator().manual_seed(0))
    state = optimizer.state_dict()
    n_params = sum(1 for _ in method.parameters() if _.requires_grad)
    assert sorted(state["state"]) == list(range(n_params))  # one numbering, like a single optimizer
    fresh = build_method_optimizer("adamw", method, 1e-3, 0.0)
    fresh.load_state_dict(state)
    for player, opt in optimizer.by_player.items():
        for a, b in zip(opt.param_groups, fresh.by_player[player].param_groups):
            for p, q in zip(a["params"], b["params"]):
                torch.testing.assert_close(opt.state[p]["exp_avg"], fresh.by_player[player].state[q]["exp_avg"])


def test_r1_refuses_batch_norm_and_spectral_norm_exports_plain_weights():
    with pytest.raises(ValueError, match="dcgan-nonorm"):
        make("dcgan", r1_gamma=10.0)
    method = make("dcgan", backbone="dcgan-nonorm", spectral_norm=True, r1_gamma=10.0)
    images = real_slice(16)
    for _ in range(3):  # power iterations run in training forwards
        method(images, torch.Generator().manual_seed(0))
    conv = method.backbone.model.layers[1][0]
    assert torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.05)
    encoder, _ = method.export_encoder()
    plain = build_backbone("dcgan-nonorm", 3, "small", 16)
    plain.load_state_dict(encoder.state_dict(), strict=True)
    method.eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(plain.eval()(x), method.backbone(x))
    # a step checkpoint holds the parametrized weights: the loader bakes them the same way
    stepped = build_backbone("dcgan-nonorm", 3, "small", 16)
    stepped.model.load_state_dict(bake_spectral_norm(stepped.model, method.backbone.model.state_dict()), strict=True)
    torch.testing.assert_close(stepped.eval()(x), method.backbone(x))
    out = method.train()(images, torch.Generator().manual_seed(0))
    assert out["r1"] > 0 and torch.isfinite(out["loss"])


def test_adversarial_watch_warns_when_the_discriminator_wins_or_the_generator_collapses(caplog):
    from selfsup.utils.monitor import AdversarialWatch
    from selfsup.methods.adversarial import sample_diversity

    real = torch.randn(16, 3, 8, 8)
    assert sample_diversity(real[:1].expand(16, -1, -1, -1), real).item() == 0  # one image for every z
    assert sample_diversity(real, real).item() == pytest.approx(1.0)
    watch = AdversarialWatch(patience=3)
    with caplog.at_level("WARNING", logger="selfsup"):
        for step in range(1, 6):
            watch.check(step, 1.2 if step == 2 else 1e-4, 0.9)  # a run of 3 starts at step 3
        assert [r.message for r in caplog.records if "wins outright at step 5" in r.message]
        for step in range(6, 12):
            watch.check(step, 1.3, 0.01)
    assert sum("wins outright" in r.message for r in caplog.records) == 1
    assert sum("generator collapse" in r.message for r in caplog.records) == 1
    # a generator that starts nearly collapsed gets 4x the patience to spread out
    starting = AdversarialWatch(patience=3)
    with caplog.at_level("WARNING", logger="selfsup"):
        for step in range(1, 12):
            starting.check(step, 1.3, 0.1)
        assert "collapse" not in starting.warned
        starting.check(12, 1.3, 0.1)
    assert "collapse" in starting.warned


def test_gans_refuse_data_parallel_before_launching(tmp_path, capsys):
    from selfsup.cli import main

    assert main(["pretrain", "--data", "digits", "--method", "dcgan", "--devices", "2", "--out", str(tmp_path / "r")]) == 2
    assert "adversarial methods train in one process" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_generator_fits_any_image_size():
    from selfsup.heads import DCGANGenerator

    for size in (8, 28, 32, 64):
        out = DCGANGenerator(16, 1, size, width=8)(torch.randn(2, 16))
        assert out.shape == (2, 1, size, size) and out.abs().max() <= 1


@pytest.mark.parametrize("name", GAN_METHODS)
def test_gan_pretrains_on_digits_and_its_encoder_transfers(tmp_path, name):
    """The CLI end to end on real digits: a sample grid, the GAN columns in metrics.csv, an encoder that
    loads and goes through `selfsup eval knn`, `finetune` and `study`."""
    out, picture = tmp_path / name, tmp_path / f"{name}.png"
    run = run_cli(*["pretrain", "--data", "digits", "--method", name,
                          "--image-size", "16", "--batch-size", "64", "--steps", "20",
                          "--method-arg", "generator_width=16", "--show-batch", str(picture), "--out", str(out),
                          "--quiet", "--json"])
    assert run.returncode == 0, run.stderr
    assert picture.stat().st_size > 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"d_loss", "g_loss", "d_real", "d_fake", "diversity"} <= set(header)
    encoder, meta = load_backbone(out)
    assert meta["method"] == name and encoder.feature_dim == meta["feature_dim"]
    evaluated = run_cli(*["eval", "knn", "--checkpoint", str(out), "--labeled",
                                "digits", "--json"])
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert np.isfinite(result["top1"]) and result["top1"] > 0.3  # 10 classes: chance is 0.1
    tuned = run_cli(*["finetune", "--checkpoint", str(out), "--labeled", "digits",
                            "--labels-per-class", "2", "--seeds", "1", "--steps", "3", "--json", "--quiet"])
    assert tuned.returncode == 0, tuned.stderr
    studied = run_cli(*["study", "--labeled", "digits", "--methods", "",
                              "--checkpoint", str(out), "--labels-per-class", "2", "--seeds", "1", "--evaluations",
                              "finetune,knn", "--finetune-steps", "3", "--out", str(tmp_path / "study"), "--quiet",
                              "--json"])
    assert studied.returncode == 0, studied.stderr
    rows = json.loads(studied.stdout.strip().splitlines()[-1])["rows"]
    assert {(name, "finetune"), (name, "knn")} <= {(r["method"], r["evaluation"]) for r in rows}


def test_a_steps_players_draw_from_one_generator_in_turn(tmp_path, monkeypatch):
    """Pretraining hands the discriminator's and the generator's turns of a step one generator (seeded
    by the step), so the generator's turn continues the stream the discriminator's drew from."""
    from selfsup.config import PretrainConfig
    from selfsup.engine.trainer import pretrain

    seen: list[tuple[str, int, int]] = []
    original = METHODS.get("dcgan").forward

    def recording(self, images, generator, **kwargs):
        seen.append((kwargs.get("player"), id(generator), generator.initial_seed()))
        return original(self, images, generator, **kwargs)

    monkeypatch.setattr(METHODS.get("dcgan"), "forward", recording)
    pretrain(PretrainConfig(data="digits", method="dcgan", backbone="dcgan", steps=2, batch_size=16,
                            method_args=SMALL, out=str(tmp_path / "run")), progress=False)
    players = [p for p, _, _ in seen]
    assert players == ["discriminator", "generator"] * 2
    assert seen[0][1:] == seen[1][1:] and seen[2][1:] == seen[3][1:] and seen[0][2] != seen[2][2]
