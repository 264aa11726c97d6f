import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from selfsup.engine.optim import LARS, build_optimizer, param_groups
from selfsup.engine.schedule import due, set_learning_rates, warmup_cosine

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RUN = [sys.executable, "-m", "selfsup", "pretrain", "--data", "digits", "--backbone", "small-convnet",
       "--views", "small-gray", "--batch-size", "32", "--steps", "12", "--checkpoint-every", "3", "--quiet"]


def test_lars_step_matches_the_formula():
    w = torch.tensor([[3.0, 4.0]], requires_grad=True)  # ‖w‖ = 5
    b = torch.tensor([1.0], requires_grad=True)
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, momentum=0.9, trust_coefficient=0.01)
    w.grad, b.grad = torch.tensor([[1.0, 0.0]]), torch.tensor([2.0])
    opt.step()
    update = torch.tensor([[1.0, 0.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])  # g + λw
    trust = 0.01 * 5.0 / update.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * trust * update)
    torch.testing.assert_close(b.detach(), torch.tensor([0.0]))  # excluded: plain SGD step 1 - 0.5*2


def test_lars_clip_steps_a_layer_by_eta_times_its_norm_capped_at_plain_sgd():
    """With ``clip`` (solo-learn's ``clip_lr``) a layer steps min(η‖w‖, lr‖g‖) along -g: η·5 = 0.1 when
    that is the smaller, lr·‖g‖ = 0.5 when η is large; and build_optimizer passes both settings on."""
    for eta, step_norm in ((0.02, 0.02 * 5.0), (10.0, 0.5 * 1.0)):
        w = torch.tensor([[3.0, 4.0]], requires_grad=True)  # ‖w‖ = 5
        w.grad = torch.tensor([[1.0, 0.0]])  # ‖g‖ = 1
        LARS([{"params": [w], "weight_decay": 0.0, "lars_exclude": False}], lr=0.5, trust_coefficient=eta,
             clip=True).step()
        torch.testing.assert_close(w.detach(), torch.tensor([[3.0 - step_norm, 4.0]]))
    group = build_optimizer("lars", nn.Linear(3, 2), 0.1, 0.0, lars_eta=0.02, lars_clip=True).param_groups[0]
    assert group["trust_coefficient"] == 0.02 and group["clip"] is True


def test_lars_multi_tensor_steps_match_a_per_tensor_loop():
    """Three steps over tensors of several shapes (one all zeros: trust ratio 1) equal the paper's update
    applied tensor by tensor, momentum included."""
    torch.manual_seed(0)
    shapes = [(4, 3), (5,), (2, 2, 3), (3, 3)]
    start = [torch.randn(s) for s in shapes]
    start[3].zero_()
    grads = [[torch.randn(s) for s in shapes] for _ in range(3)]
    params = [w.clone().requires_grad_() for w in start]
    opt = LARS([{"params": params[:1] + params[2:], "weight_decay": 0.05, "lars_exclude": False},
                {"params": params[1:2], "weight_decay": 0.0, "lars_exclude": True}], lr=0.3, momentum=0.9)
    expected, buffers = [w.clone() for w in start], [None] * len(shapes)
    for step in range(3):
        for p, g in zip(params, grads[step]):
            p.grad = g.clone()
        opt.step()
        for i, (w, g) in enumerate(zip(expected, grads[step])):
            u = g.clone()
            if i != 1:
                u = u + 0.05 * w
                if w.norm() > 0 and u.norm() > 0:
                    u = u * (0.001 * w.norm() / (u.norm() + 1e-8))
            buffers[i] = u if buffers[i] is None else 0.9 * buffers[i] + u
            expected[i] = w - 0.3 * buffers[i]
    for p, w in zip(params, expected):
        torch.testing.assert_close(p.detach(), w)


def test_biases_and_norms_are_not_decayed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decayed, plain = param_groups(model, 1e-4)
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 4
    for name in ("sgd", "adamw", "lars"):
        assert build_optimizer(name, model, 0.1, 1e-4).param_groups[1]["weight_decay"] == 0.0


def test_constant_lr_modules_get_their_own_groups():
    """SimSiam's predictor keeps the peak lr (its groups are marked ``constant_lr``); everything else is
    grouped as before, and a model without ``constant_lr`` gets the usual two groups."""
    from selfsup.backbones import build_backbone
    from selfsup.methods import METHODS
    from selfsup.views import Normalization, Views

    simsiam = METHODS.get("simsiam")(build_backbone("small-convnet", 3, "small", 16),
                                     Views.preset("mocov2", 16, Normalization([0.5] * 3, [0.25] * 3)), 32, 8)
    groups = param_groups(simsiam, 1e-4)
    fixed = {id(p) for g in groups if g.get("constant_lr") for p in g["params"]}
    assert fixed == {id(p) for p in simsiam.prediction.parameters()} and len(groups) == 4
    assert sum(len(g["params"]) for g in groups) == len(list(simsiam.parameters()))
    assert len(param_groups(nn.Linear(2, 2), 0.1)) == 2
    faster = METHODS.get("simsiam")(build_backbone("small-convnet", 3, "small", 16),
                                    Views.preset("mocov2", 16, Normalization([0.5] * 3, [0.25] * 3)), 32, 8,
                                    predictor_lr_scale=10.0)
    marks = [(g.get("constant_lr", False), g.get("lr_scale", 1.0)) for g in param_groups(faster, 1e-4)]
    assert marks == [(False, 1.0)] * 2 + [(True, 10.0)] * 2  # the predictor: peak lr, times 10


def test_predictor_lr_scale_gives_the_predictor_groups_that_step_at_the_scaled_rate():
    """BYOL's ``predictor_lr_scale``: the predictor's parameters, and only they, land in groups whose
    lr is the schedule's value times the scale (the peak's for SimSiam's ``constant_lr`` groups)."""
    from selfsup.backbones import build_backbone
    from selfsup.methods import METHODS
    from selfsup.views import Normalization, Views

    views = Views.preset("byol", 16, Normalization([0.5] * 3, [0.25] * 3))
    byol = METHODS.get("byol")(build_backbone("small-convnet", 3, "small", 16), views, 32, 8, predictor_lr_scale=10.0)
    groups = param_groups(byol, 1e-4)
    scaled = {id(p) for g in groups if g.get("lr_scale") == 10.0 for p in g["params"]}
    assert scaled == {id(p) for p in byol.prediction.parameters()} and len(groups) == 4
    trainable = [p for p in byol.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    plain = METHODS.get("byol")(build_backbone("small-convnet", 3, "small", 16), views, 32, 8)
    assert len(param_groups(plain, 1e-4)) == 2 and plain.lr_scale == {}

    optimizer = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))]},
                                 {"params": [nn.Parameter(torch.zeros(1))], "lr_scale": 10.0},
                                 {"params": [nn.Parameter(torch.zeros(1))], "constant_lr": True},
                                 {"params": [nn.Parameter(torch.zeros(1))], "constant_lr": True, "lr_scale": 0.5}], lr=1.0)
    set_learning_rates(optimizer, peak=0.2, scheduled=0.05)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.5, 0.2, 0.1])
    with pytest.raises(ValueError, match="lr scale of 'prediction' must be positive"):
        METHODS.get("byol")(build_backbone("small-convnet", 3, "small", 16), views, 32, 8, predictor_lr_scale=0.0)


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, 100, 1.0, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(values[10:], values[11:])) and values[-1] < 0.001


def test_logs_and_checkpoints_fall_every_n_steps_and_on_the_last():
    assert [done for done in range(1, 26) if due(done, 10, 25)] == [10, 20, 25]


def final_state(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "step-000012.safetensors"))


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b) and any(k.startswith("optim/") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("full") / "run"
    subprocess.run(RUN + ["--out", str(out)], env=ENV, check=True, capture_output=True)
    return final_state(out)


def test_resume_after_deterministic_kill_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    killed = subprocess.run(RUN + ["--out", str(out)], env={**ENV, "SELFSUP_KILL_AT_STEP": "7"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoints" / "step-000006.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(final_state(out), uninterrupted)
    steps = [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps), key=int)  # no step logged twice after the resume


def test_resume_after_real_sigkill_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = subprocess.Popen(RUN + ["--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not after finishing
    assert not (out / "checkpoints" / "step-000012.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(final_state(out), uninterrupted)


def _signalled_run(out: Path, signum: int, times: int = 1) -> tuple[subprocess.CompletedProcess, int]:
    """RUN into ``out``, sent ``signum`` (``times`` in a row) once its first checkpoint exists; the exit code and
    stderr, and the step the signal found."""
    proc = subprocess.Popen(RUN + ["--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    for _ in range(times):
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), json.loads(pointer.read_text())["step"]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_after_the_step_in_flight_with_a_checkpoint_and_resumes_exactly(tmp_path, uninterrupted,
                                                                                       signum, code):
    """SIGTERM (a scheduler's preemption notice) or Ctrl-C: the step in flight finishes, a checkpoint of it is
    written, one line says where and how to go on; the resumed run ends equal to the uninterrupted one."""
    out = tmp_path / "run"
    stopped, step = _signalled_run(out, signum)
    name = signal.Signals(signum).name
    assert stopped.returncode == code, stopped.stderr
    assert f"selfsup: stopped at step {step} by {name}; continue with --resume" in stopped.stderr.splitlines()
    assert 3 <= step < 12 and (out / "checkpoints" / f"step-{step:06d}.safetensors").exists()
    logged = [int(line.split(",")[0]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert not logged or max(logged) <= step  # nothing ran past the checkpoint
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(final_state(out), uninterrupted)


def test_a_second_sigterm_stops_at_once(tmp_path):
    stopped, _ = _signalled_run(tmp_path / "run", signal.SIGTERM, times=2)
    assert stopped.returncode in (-signal.SIGTERM, 143), stopped.stderr  # 143 if the step ended between the two


def test_lars_settings_are_recorded_and_survive_a_resume(tmp_path):
    """--lars-eta, --lars-clip and --warmup-fraction reach the optimizer, the run's config and its
    checkpoints, and a run killed and resumed with them ends where the uninterrupted one does."""
    run = RUN + ["--optimizer", "lars", "--lr", "1.0", "--lars-eta", "0.02", "--lars-clip", "--warmup-fraction", "0.25"]
    full, out = tmp_path / "full", tmp_path / "run"
    subprocess.run(run + ["--out", str(full)], env=ENV, check=True, capture_output=True)
    config = (full / "config.yaml").read_text()
    assert "lars_eta: 0.02" in config and "lars_clip: true" in config and "warmup_fraction: 0.25" in config
    logged = dict(zip(*[line.split(",") for line in (full / "metrics.csv").read_text().splitlines()[:2]]))
    assert float(logged["lr"]) == pytest.approx(warmup_cosine(9, 12, 1.0 * 32 / 256, warmup_steps=3))  # 0.25 × 12
    groups = json.loads((full / "checkpoints" / "step-000012.json").read_text())["optimizer"]["param_groups"]
    assert all(g["trust_coefficient"] == 0.02 and g["clip"] is True for g in groups)
    killed = subprocess.run(run + ["--out", str(out)], env={**ENV, "SELFSUP_KILL_AT_STEP": "7"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(final_state(out), final_state(full))


def test_collapse_statistics_on_known_cases():
    from selfsup.utils.monitor import effective_rank, embedding_std

    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(4096, 64, generator=g)
    assert embedding_std(healthy) * 64 ** 0.5 == pytest.approx(1.0, abs=0.02)  # ≈ 1/sqrt(d) per dimension
    point = torch.ones(32, 64)
    assert embedding_std(point) == pytest.approx(0.0, abs=1e-12)
    line = torch.randn(32, 1, generator=g, dtype=torch.float64) * torch.randn(1, 64, generator=g, dtype=torch.float64)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    # Closed form: r equal singular values give an effective rank of exactly r.
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    centred = q[:, :5] - q[:, :5].mean(0)  # keep the columns orthogonal after centring
    basis, _ = torch.linalg.qr(centred)
    assert effective_rank(basis) == pytest.approx(5, abs=1e-6)


def test_perplexity_of_assignments_on_known_cases():
    """exp(mean row entropy): K for uniform rows, 1 for one-hot rows, m for rows uniform over m entries;
    SwAV and DINO report it for their codes and teacher targets."""
    from selfsup.utils.monitor import perplexity

    assert float(perplexity(torch.full((4, 10), 0.1))) == pytest.approx(10.0, rel=1e-6)
    assert float(perplexity(torch.eye(6))) == pytest.approx(1.0, abs=1e-6)
    half = torch.zeros(2, 8)
    half[:, :4] = 0.25
    assert float(perplexity(half)) == pytest.approx(4.0, rel=1e-6)
    mixed = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25] * 4])  # entropies log 2 and log 4: their mean, exponentiated
    assert float(perplexity(mixed)) == pytest.approx(8 ** 0.5, rel=1e-6)


def test_costly_scalars_are_computed_only_on_logged_steps(tmp_path, monkeypatch):
    """SwAV's code perplexity (DINO's teacher perplexity alike) is computed on the steps metrics.csv
    records, every ``log_every`` and the last, and filled in on each of them."""
    import selfsup.methods.swav as swav
    from selfsup.config import PretrainConfig
    from selfsup.engine.trainer import pretrain

    calls = []
    monkeypatch.setattr(swav, "perplexity", lambda p: calls.append(len(p)) or torch.tensor(2.0))
    torch.set_num_threads(1)
    pretrain(PretrainConfig(data="digits", method="swav", backbone="small-convnet", steps=7, batch_size=16,
                            log_every=3, view_args={"local_crops": 0}, num_workers=0, out=str(tmp_path / "run")),
             progress=False)
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["code_perplexity"]) for r in rows] == [("3", "2.0"), ("6", "2.0"), ("7", "2.0")]
    assert len(calls) == 3
    calls.clear()  # --time-limit's timed warm-up steps are unlogged ones too
    pretrain(PretrainConfig(data="digits", method="swav", backbone="small-convnet", time_limit=2.0, batch_size=16,
                            log_every=3, view_args={"local_crops": 0}, num_workers=0, out=str(tmp_path / "timed")),
             progress=False)
    with open(tmp_path / "timed" / "metrics.csv") as f:
        assert len(calls) == len(list(csv.DictReader(f))) >= 1


def test_collapse_watch_warns_once_after_patience(caplog):
    from selfsup.utils.monitor import CollapseWatch

    watch = CollapseWatch(patience=2)
    collapsed = torch.ones(16, 8) + 1e-9 * torch.randn(16, 8)
    with caplog.at_level("WARNING", logger="selfsup"):
        watch.check(torch.randn(16, 8), 1)
        watch.check(collapsed, 2)
        assert not watch.warned
        watch.check(collapsed, 3)
        watch.check(collapsed, 4)
    assert watch.warned and sum("collapse" in r.message for r in caplog.records) == 1


def test_collapse_watch_lets_a_concentrated_start_spread_but_not_stay():
    """MoCo v2's head starts near one direction (std·sqrt(d) 0.05 on CIFAR-10) and spreads as it learns."""
    from selfsup.utils.monitor import CollapseWatch

    noise = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))

    def concentrated(scale: float) -> torch.Tensor:
        return 10.0 + scale * noise  # around one direction; the spread grows with ``scale``

    spreading, stuck = CollapseWatch(patience=3), CollapseWatch(patience=3)
    for check in range(13):
        spreading.check(concentrated(0.1 * 1.1 ** check), check)
        assert spreading.last["embedding_std_x_sqrt_d"] < 0.1
        stuck.check(concentrated(0.1), check)
    assert not spreading.warned and stuck.warned  # stuck: 12 checks without a new best
    assert CollapseWatch(patience=3).check(concentrated(0.1), 0)["effective_rank"] > 1.5


def test_collapse_watch_warns_on_a_lasting_dimensional_collapse(caplog):
    """PIRL's NCE on CIFAR-10: healthy spread, effective rank 1.5-8 of 128 for hundreds of steps."""
    from selfsup.utils.monitor import CollapseWatch

    g = torch.Generator().manual_seed(0)
    few = torch.randn(256, 3, generator=g) @ torch.randn(3, 128, generator=g)  # 3 directions, spread out
    healthy = torch.randn(256, 128, generator=g)
    watch = CollapseWatch(patience=3, low_rank_patience=10)
    assert watch.check(few, 0)["effective_rank"] < 3.5 and watch.last["embedding_std_x_sqrt_d"] > 0.5
    with caplog.at_level("WARNING", logger="selfsup"):
        for step in range(1, 9):  # a dip of 9 checks is forgiven ...
            watch.check(few, step)
        watch.check(healthy, 9)
        for step in range(10, 19):
            watch.check(few, step)
        assert not watch.warned
        watch.check(few, 19)  # ... the tenth in a row is not
    assert watch.warned and sum("dimensional collapse" in r.message for r in caplog.records) == 1
    # Small batches or embeddings are judged against min(N, d) / 8: 3 directions of 16 are fine.
    small = CollapseWatch(low_rank_patience=1)
    small.check(few[:16, :16], 0)
    assert not small.warned


@pytest.mark.parametrize("method,batch_size,extra", [
    ("deepcluster", 256, []),  # pseudo-labels and the epoch plan, re-clustered at each epoch boundary
    # memory bank and the NCE partition constant; 64 images (576 jigsaw tiles) a step keep it fast
    ("pirl", 64, []),
    ("swav", 256, ["--method-arg", "queue_start_step=2", "--method-arg", "queue_size=512",
                   "--method-arg", "freeze_prototypes_steps=3", "--method-arg", "hidden_dim=64"]),  # queue, step counter
    ("dcgan", 32, ["--method-arg", "generator_width=16"]),  # two optimizers taking turns, the EMA generator
])
def test_stateful_methods_resume_equal_to_uninterrupted(tmp_path, method, batch_size, extra):
    run = [sys.executable, "-m", "selfsup", "pretrain", "--data", "digits", "--backbone", "small-convnet",
           "--views", "small-gray", "--batch-size", str(batch_size), "--steps", "12", "--checkpoint-every", "3",
           "--quiet", "--method", method, *extra]
    full = tmp_path / "full"
    subprocess.run(run + ["--out", str(full)], env=ENV, check=True, capture_output=True)
    out = tmp_path / "run"
    killed = subprocess.run(run + ["--out", str(out)], env={**ENV, "SELFSUP_KILL_AT_STEP": "7"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL  # step 7: mid-epoch (5 steps an epoch), after a boundary
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    state = final_state(out)
    assert_same_state(state, final_state(full))
    assert any(not k.startswith("optim/") and any(w in k for w in ("memory", "queue", "pseudo_labels", "ema_generator"))
               for k in state)


def test_a_pool_resident_on_the_device_gives_the_same_batches_split_across_ranks():
    """The GPU path (uint8 pool indexed on the device) yields exactly the host path's batches, and two
    ranks' shares of every global batch are disjoint halves of it."""
    from selfsup.utils.distributed import DistContext
    from selfsup.data.order import epoch_order
    from selfsup.engine.batches import batches

    array = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    data = type("Pool", (), {"array": array, "stream": None, "__len__": lambda self: len(array)})()
    order = lambda epoch: epoch_order(50, 0, epoch)  # noqa: E731
    host = list(batches(data, 8, order, 3, 11, 0))
    device = list(batches(data, 8, order, 3, 11, 0, resident=torch.from_numpy(array)))
    assert len(host) == len(device) == 8
    for (i, x), (j, y) in zip(host, device):
        assert torch.equal(i, j) and torch.equal(x, y)
    halves = [list(batches(data, 8, order, 3, 11, 0, DistContext(rank, 2, rank))) for rank in (0, 1)]
    for (i, x), (a, xa), (b, xb) in zip(host, *halves):
        assert torch.equal(torch.cat([a, b]), i) and torch.equal(torch.cat([xa, xb]), x)


def test_a_failing_checkpoint_write_ends_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Disk full while writing the second checkpoint: exit 1, one line naming the file and the OS error, no
    temporary file left, and latest.json still names the first checkpoint, which loads."""
    import errno

    from conftest import run_cli
    from selfsup.utils import checkpoint as ckpt

    real_save, calls = ckpt.save_file, []

    def disk_full_on_second(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as f:  # a part written, then the disk fills
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", disk_full_on_second)
    out = tmp_path / "run"
    result = run_cli(*RUN[3:], "--out", str(out))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("selfsup: error:")]
    assert lines == [f"selfsup: error: cannot write {out / 'checkpoints' / 'step-000006.safetensors'}: "
                     "No space left on device (errno 28); the previous files are kept"]
    assert not list((out / "checkpoints").glob(".*tmp*"))
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert latest.name == "step-000003.safetensors" and ckpt.read_checkpoint(latest)[1]["step"] == 3


@pytest.mark.parametrize("name, error", [("encoder.safetensors", "ENOSPC"), ("result.json", "EACCES")])
def test_a_failing_final_write_names_the_file_and_keeps_the_checkpoints(tmp_path, monkeypatch, name, error):
    """The encoder or result.json refused at the end of pretrain (disk full, permission denied): exit 1, one
    line naming that file and the OS error, no temporary file, and the last checkpoint still loads."""
    import builtins
    import errno

    from conftest import run_cli
    from selfsup.utils import checkpoint as ckpt

    code = getattr(errno, error)
    real_save, real_open = ckpt.save_file, builtins.open

    def refused(path: object) -> bool:
        return Path(str(path)).name.startswith(f".{name}.tmp")

    def save(tensors, path, metadata=None):
        if refused(path):
            raise OSError(code, os.strerror(code))
        return real_save(tensors, path, metadata=metadata)

    def opener(path, *args, **kwargs):
        if refused(path):
            raise OSError(code, os.strerror(code))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", save)
    monkeypatch.setattr(ckpt, "open", opener, raising=False)  # the module's own open, not pytest's
    out = tmp_path / "run"
    result = run_cli(*RUN[3:], "--out", str(out))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("selfsup: error:")]
    assert lines == [f"selfsup: error: cannot write {out / name}: {os.strerror(code)} (errno {code}); "
                     "the previous files are kept"]
    assert not list(out.glob(".*tmp*")) and not (out / name).exists()
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert ckpt.read_checkpoint(latest)[1]["step"] == 12


def test_resume_from_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted):
    out = tmp_path / "run"
    killed = subprocess.run(RUN + ["--out", str(out)], env={**ENV, "SELFSUP_KILL_AT_STEP": "7"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    newest = out / "checkpoints" / "step-000006.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # a disk that lost the file's tail
    resumed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet"],
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "cannot read checkpoint" in resumed.stderr and str(newest) in resumed.stderr
    assert "resuming from the previous checkpoint" in resumed.stderr and "step-000003" in resumed.stderr
    assert_same_state(final_state(out), uninterrupted)


@pytest.mark.parametrize("backbone, data", [("small-convnet", "digits"), ("resnet18", "cifar")])
def test_channels_last_is_the_default_for_convnets_and_trains_the_same_model(tmp_path, backbone, data):
    """NHWC is chosen for convolutional backbones (said in config.yaml and result.json) and trains the model
    the NCHW path trains: losses and weights within float tolerance after a few steps."""
    from safetensors.torch import load_file

    from conftest import CIFAR_SLICE, run_cli

    source = "digits" if data == "digits" else str(CIFAR_SLICE)
    results = {}
    for flag in (None, "false"):
        out = tmp_path / f"run-{flag}"
        args = ["pretrain", "--data", source, "--backbone", backbone, "--steps", "4", "--batch-size", "16",
                "--log-every", "1", "--out", str(out), "--quiet", "--json"] + (["--channels-last", flag] if flag else [])
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        results[flag] = (json.loads(done.stdout.splitlines()[-1]), out)
    (fast, fast_out), (plain, plain_out) = results[None], results["false"]
    assert fast["channels_last"] is True and plain["channels_last"] is False
    assert "channels_last: true" in (fast_out / "config.yaml").read_text()
    losses = [[float(line.split(",")[2]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
              for out in (fast_out, plain_out)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-4)
    a, b = load_file(fast_out / "encoder.safetensors"), load_file(plain_out / "encoder.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4, msg=key)


def test_a_time_limit_is_replanned_from_the_runs_own_steps(tmp_path, monkeypatch, caplog):
    """The warm-up's estimate of a step (here forced 10x too slow) plans too few steps; after its first
    steps the run re-plans from its own step time, before the warm-up ends, and the schedule, config.yaml,
    metrics.csv and result.json all follow the new count (here capped at 4x the estimate)."""
    import logging
    import re

    from conftest import run_cli
    from selfsup.engine.schedule import warmup_cosine
    from selfsup.engine.trainer import PretrainRun, REPLAN_MAX

    monkeypatch.setattr(PretrainRun, "seconds_per_step", lambda self: 0.2)
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="selfsup"):
        done = run_cli("pretrain", "--data", "digits", "--backbone", "small-convnet", "--views", "small-gray",
                       "--batch-size", "32", "--time-limit", "6", "--log-every", "1", "--out", str(out), "--quiet",
                       "--json")
    assert done.returncode == 0, done.stderr
    planned = int(re.search(r"-> (\d+) steps$", next(r.getMessage() for r in caplog.records
                                                        if r.getMessage().startswith("time limit 6 s: 0.200"))).group(1))
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["steps"] == REPLAN_MAX * planned and any("instead of" in r.getMessage() for r in caplog.records)
    assert f"steps: {result['steps']}" in (out / "config.yaml").read_text()
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()]
    lr = rows[0].index("lr")
    assert int(rows[-1][0]) == result["steps"]
    cfg = __import__("yaml").safe_load((out / "config.yaml").read_text())
    peak = cfg["lr"] * cfg["batch_size"] / 256
    total = result["steps"]
    expected = warmup_cosine(total - 1, total, peak, int(round(cfg["warmup_fraction"] * total)))
    assert float(rows[-1][lr]) == pytest.approx(expected, rel=1e-6)


def test_a_time_limit_alone_trains_the_measured_choice_and_any_choice_flag_wins(tmp_path, monkeypatch, caplog):
    """`pretrain --data D --time-limit S` with nothing else chosen trains the row measured nearest to S for
    this device type, says so in the log and result.json, and saves it in config.yaml; one choosing flag
    (here --method) and the defaults stand. The shipped rows name registered methods and backbones."""
    import logging

    import yaml
    from conftest import run_cli
    from selfsup.backbones.registry import list_backbones
    from selfsup.engine import budget_choice
    from selfsup.engine.budget_choice import MEASURED, BudgetChoice, choose_for_time, nothing_chosen
    from selfsup.engine.trainer import PretrainRun
    from selfsup.methods import METHODS

    for rows in MEASURED.values():
        for row in rows:
            assert row.method in METHODS.names() and row.backbone in list_backbones()
    near, far = (BudgetChoice("vicreg", "small-convnet", "auto", None, s, 0.5, 0.4, "test") for s in (60.0, 3600.0))
    monkeypatch.setitem(budget_choice.MEASURED, "cpu", (near, far))
    assert choose_for_time(100, "cpu") is near and choose_for_time(2000, "cpu") is far
    assert choose_for_time(600, "cuda") is None
    assert nothing_chosen({"data", "time_limit", "out", "batch_size"})
    assert not nothing_chosen({"data", "time_limit", "method"}) and not nothing_chosen({"data", "epochs"})

    monkeypatch.setattr(PretrainRun, "seconds_per_step", lambda self: 0.5)
    common = ("--data", "digits", "--batch-size", "32", "--time-limit", "3", "--quiet", "--json", "--device", "cpu")
    with caplog.at_level(logging.INFO, logger="selfsup"):
        done = run_cli("pretrain", *common, "--out", str(tmp_path / "picked"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["method"] == "vicreg" and result["backbone"] == "small-convnet"
    assert result["picked"]["method"] == "vicreg" and result["picked"]["seconds"] == 60.0
    assert yaml.safe_load((tmp_path / "picked" / "config.yaml").read_text())["method"] == "vicreg"
    assert any(r.getMessage().startswith("no method given: vicreg on small-convnet") for r in caplog.records)

    chosen = run_cli("pretrain", *common, "--method", "simclr", "--backbone", "small-convnet",
                     "--out", str(tmp_path / "chosen"))
    assert chosen.returncode == 0, chosen.stderr
    result = json.loads(chosen.stdout.splitlines()[-1])
    assert result["method"] == "simclr" and "picked" not in result
