"""Registry-driven: every method gets the same checks, so a new method is covered automatically."""
import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.methods import METHODS
from selfsup.views import Normalization, Views


def make(name: str):
    torch.manual_seed(0)
    cls = METHODS.get(name)
    backbone = build_backbone("resnet18", 3, "small", 16)
    views = Views.preset(cls.recipe.views, 16, Normalization([0.5] * 3, [0.25] * 3))
    # The papers' 4096/8192-wide heads are shrunk so the smoke test stays a few seconds on a CPU.
    args = {k: (64 if k.endswith("_dim") and v is not None else v) for k, v in cls.recipe.args.items()}
    return cls(backbone, views, **args)


@pytest.fixture
def batch():
    return (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


@pytest.mark.parametrize("name", METHODS.names())
def test_forward_finite_and_every_parameter_gets_a_gradient(name, batch):
    method = make(name)
    loss = method(batch, torch.Generator().manual_seed(0))["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    frozen = [n for n, p in method.named_parameters() if not p.requires_grad]
    assert all(n.startswith("target_") for n in frozen), frozen  # only momentum targets are frozen
    assert all(p.grad is None for p in method.parameters() if not p.requires_grad)


@pytest.mark.parametrize("name", METHODS.names())
def test_loss_falls_on_a_fixed_batch(name, batch):
    method = make(name)
    # AdamW's step does not scale with the loss, whose magnitude differs tenfold between methods.
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    losses = []
    for step in range(10):
        loss = method(batch, torch.Generator().manual_seed(0))["loss"]  # fixed views every step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step(step, 10)
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0]


@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_documented(name):
    cls = METHODS.get(name)
    assert cls.paper and "arxiv" in (cls.__doc__ or "").lower()


def test_byol_target_follows_the_online_network_by_ema():
    from selfsup.methods.momentum import cosine_momentum

    method = make("byol")
    online = [p.detach().clone() for p in method.backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in method.target_backbone.parameters()]
    method.after_step(0, 100)
    m = cosine_momentum(0, 100, 0.996)
    assert m == pytest.approx(0.996)
    for t, b, o in zip(method.target_backbone.parameters(), before, online):
        torch.testing.assert_close(t, m * b + (1 - m) * (o + 1.0))
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)


def test_moco_queue_is_a_ring_buffer_of_normalized_keys(batch):
    method = make("moco_v2")
    method.queue = torch.nn.functional.normalize(torch.randn(12, method.queue.shape[1]), dim=1)
    method(batch, torch.Generator().manual_seed(0))
    assert int(method.queue_pointer) == 8
    torch.testing.assert_close(method.queue[:8].norm(dim=1), torch.ones(8))
    method(batch, torch.Generator().manual_seed(1))
    assert int(method.queue_pointer) == (8 + 8) % 12  # wrapped around


def test_moco_shuffled_keys_are_unshuffled(batch):
    from selfsup.methods.moco import forward_in_splits

    method = make("moco_v2").eval()  # eval-mode batch norm: the order of the batch cannot matter
    x = torch.randn(8, 3, 16, 16)
    encode = lambda t: method.target_projection(method.target_backbone(t))  # noqa: E731
    order = torch.randperm(8)
    shuffled = forward_in_splits(encode, x[order], 4)
    key = torch.empty_like(shuffled)
    key[order] = shuffled
    torch.testing.assert_close(key, encode(x), atol=1e-5, rtol=1e-5)
