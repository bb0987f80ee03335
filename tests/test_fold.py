"""Folding eval-mode BatchNorm into convolutions keeps the function, its parameters and its
Hessian; pairs that are not certainly conv -> bn are left alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape_taxonomy.metrics.curvature.fold import ConvBN, fold_batchnorm
from landscape_taxonomy.training.models import build_model


def with_running_stats(model, x):
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x * 1.5 + 0.3)
    return model.eval()


def plain_hvp(model, x, y, v):
    """H v by double backward through the unfolded model."""
    params = list(model.parameters())
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    return torch.autograd.grad(g, params, grad_outputs=v)


@pytest.mark.parametrize("arch,n_bn", [("cnn", 3), ("resnet18", 20)])
def test_folded_model_is_the_same_function_with_the_same_hessian(arch, n_bn):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (24,), generator=gen)
    model = with_running_stats(build_model(arch, 2, (3, 8, 8), 10, seed=1).double(), x)
    folded = fold_batchnorm(model)

    assert sum(isinstance(m, ConvBN) for m in folded.modules()) == n_bn
    assert [id(p) for p in folded.parameters()] == [id(p) for p in model.parameters()]
    assert torch.allclose(folded(x), model(x), rtol=0, atol=1e-12)

    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in model.parameters()]
    ours = plain_hvp(folded, x, y, v)
    ref = plain_hvp(model, x, y, v)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    # the original model is untouched: still BatchNorm modules, no ConvBN
    assert not any(isinstance(m, ConvBN) for m in model.modules())


def test_pairs_that_are_not_conv_then_bn_stay_as_they_are():
    torch.manual_seed(0)
    x = torch.randn(16, 2, 6, 6)
    model = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3), nn.ReLU(),  # bn before conv
                          nn.Conv2d(3, 3, 3), nn.ReLU(), nn.BatchNorm2d(3),  # relu between
                          nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4))
    model = with_running_stats(model, x)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, ConvBN) for m in folded.modules())
    assert torch.allclose(folded(x), model(x))


def test_folded_pair_in_train_mode_is_plain_conv_then_batchnorm():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3)
    x = torch.randn(8, 2, 5, 5)
    pair = ConvBN(conv, bn).train()
    ref = nn.Sequential(conv, bn).train()
    saved = bn.running_mean.clone()
    assert torch.allclose(pair(x), ref(x))
    assert not torch.equal(bn.running_mean, saved)  # batch statistics were used and tracked
    pair.eval()
    assert torch.allclose(pair(x), ref.eval()(x), atol=1e-6)  # conv bias folded too


def test_a_state_for_the_model_drives_the_folded_view():
    from torch.func import functional_call

    from landscape_taxonomy.metrics.curvature.fold import folded_names

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(10, 1, 8, 8, generator=gen, dtype=torch.float64)
    model = with_running_stats(build_model("resnet18", 1, (1, 8, 8), 10, seed=0).double(), x)
    # another model's weights and statistics, not the ones the module holds
    other = with_running_stats(build_model("resnet18", 1, (1, 8, 8), 10, seed=3).double(), -x)
    state = dict(other.state_dict())
    folded = fold_batchnorm(model)
    names = folded_names(model, folded)
    ours = functional_call(folded, {names[k]: v for k, v in state.items()}, (x,))
    assert torch.allclose(ours, other(x), rtol=0, atol=1e-12)
    assert not torch.allclose(ours, model(x))
