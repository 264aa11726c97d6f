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
    return cls(backbone, views, **cls.recipe.args)


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


@pytest.mark.parametrize("name", METHODS.names())
def test_loss_falls_on_a_fixed_batch(name, batch):
    method = make(name)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
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
