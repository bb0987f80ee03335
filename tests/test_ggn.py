"""The exact Hessian trace (metrics/ggn.py) against dense float64 Hessians."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape_taxonomy.metrics.cell import hessian_of_models
from landscape_taxonomy.metrics.curvature import ggn
from landscape_taxonomy.training.models import build_model


def dense_trace(model, x, y) -> float:
    """tr H from autograd's second derivatives, one diagonal entry at a time."""
    params = list(model.parameters())
    g = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params, create_graph=True)
    flat = torch.cat([t.reshape(-1) for t in g])
    total = 0.0
    for j in range(flat.numel()):
        row = torch.autograd.grad(flat[j], params, retain_graph=True)
        total += float(torch.cat([t.reshape(-1) for t in row])[j])
    return total


def trained_looking(arch, shape, classes=4):
    """A float64 model whose BatchNorm has running statistics of its own, in eval mode."""
    m = build_model(arch, 1, shape, classes, seed=0).double()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, *shape, dtype=torch.float64) * 2 + 0.5)
    return m.eval()


def data(shape, n=20, classes=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, *shape, generator=g, dtype=torch.float64),
            torch.randint(0, classes, (n,), generator=g))


# mlp: Linear + ReLU; cnn: conv-BN-ReLU, max-pool, average pooling; resnet18: residual
# blocks, strided and 1x1 shortcut convolutions (8x8 inputs reach 1x1: both conv branches)
CASES = [("mlp", (1, 4, 4)), ("cnn", (1, 6, 6)), ("cnn", (1, 1, 12)), ("resnet18", (3, 8, 8))]


@pytest.mark.parametrize("arch,shape", CASES, ids=["mlp", "cnn", "cnn-1d", "resnet18"])
def test_exact_trace_is_the_hessians(arch, shape):
    m = trained_looking(arch, shape)
    x, y = data(shape)
    assert ggn.why_not_exact(m) is None
    exact = dense_trace(m, x, y)
    assert ggn.hessian_trace(m, x) == pytest.approx(exact, rel=1e-12)
    assert ggn.hessian_trace(m, x, chunk=7) == pytest.approx(exact, rel=1e-12)


def test_a_smooth_activation_is_refused_and_would_give_another_number():
    # The same MLP with tanh: the output is no longer affine in each weight, and the
    # Gauss-Newton trace misses the Hessian's by more than float rounding.
    m = trained_looking("mlp", (1, 4, 4))
    m.net[2] = nn.Tanh()
    x, y = data((1, 4, 4))
    assert "Tanh" in ggn.why_not_exact(m)
    with pytest.raises(ValueError, match="Tanh"):
        ggn.hessian_trace(m, x)
    layers = [mod for mod in m.modules() if isinstance(mod, ggn.LAYERS)]
    gauss_newton = ggn._chunk(m, layers, x) / len(y)
    assert abs(gauss_newton - dense_trace(m, x, y)) > 1e-3 * abs(gauss_newton)


def test_train_mode_and_foreign_models_are_refused():
    m = trained_looking("cnn", (1, 6, 6)).train()
    assert "train mode" in ggn.why_not_exact(m)
    seq = nn.Sequential(nn.Linear(4, 3)).double().eval()
    assert "Sequential is not one of the models" in ggn.why_not_exact(seq)


def test_the_default_trace_is_exact_and_hutchinson_agrees_within_its_error():
    m = trained_looking("mlp", (1, 4, 4)).float()
    x, y = data((1, 4, 4), n=60)
    x = x.float()
    exact = dense_trace(m.double(), x.double(), y)
    m.float()
    kw = dict(samples="all", max_iter=100, tol=1e-6, repeats=1, chunk=1000, seed=0)
    auto = hessian_of_models([m], x, y, **kw)[0]
    run = auto["runs"][0]
    assert run["trace_method"] == "exact" and run["trace_probes"] == 0
    assert auto["trace"] == pytest.approx(exact, rel=1e-5) and auto["trace_se"] == 0.0
    probed = hessian_of_models([m], x, y, trace="hutchinson", **kw)[0]
    assert probed["runs"][0]["trace_method"] == "hutchinson"
    assert probed["runs"][0]["trace_probes"] >= 16 and probed["trace_se"] > 0
    assert abs(probed["trace"] - exact) <= 3 * probed["trace_se"]
    # the top eigenvalue does not depend on how the trace is found
    assert probed["top"] == auto["top"]
