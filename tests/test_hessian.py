"""Hessian eigenvalue and trace against the exact Hessian and against pyhessian itself."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape_taxonomy.metrics.cell import hessian_of
from landscape_taxonomy.metrics.curvature import hessian


def tiny_models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    # Give BatchNorm non-trivial running statistics, then measure in eval mode.
    cnn.train()
    with torch.no_grad():
        cnn(torch.randn(32, 1, 5, 5) * 2 + 1)
    return [(mlp, torch.randn(40, 4)), (cnn, torch.randn(40, 1, 5, 5))]


def exact_hessian(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    buffers = dict(model.named_buffers())

    def loss(theta):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = theta[i:i + s.numel()].view(s)
            i += s.numel()
        out = functional_call(model, {**params, **buffers}, (x,))
        return nn.functional.cross_entropy(out, y)

    return torch.autograd.functional.hessian(loss, flat)


@pytest.mark.parametrize("which", [0, 1], ids=["mlp", "cnn-batchnorm"])
def test_eigenvalue_and_trace_match_exact_hessian(which):
    model, x = tiny_models()[which]
    model = model.double().eval()
    x = x.double()
    y = torch.randint(0, 3, (len(x),), generator=torch.Generator().manual_seed(1))
    h = exact_hessian(model, x, y)
    eig = torch.linalg.eigvalsh(h)
    top = eig[eig.abs().argmax()].item()
    exact_trace = torch.trace(h).item()

    hvp = hessian.HVP(model, x, y)
    est = hessian.top_eigenvalue(hvp, max_iter=1000, tol=1e-7,
                                 generator=torch.Generator().manual_seed(0))
    assert est.converged
    assert est.value == pytest.approx(top, rel=1e-2)

    # Hutchinson: each probe's vᵀHv is exact; the mean lies within 4σ of the true trace,
    # σ² = 2 Σ_{i≠j} H_ij² / m for Rademacher probes.
    tr = hessian.trace(hvp, max_iter=2000, tol=1e-9, generator=torch.Generator().manual_seed(0))
    off = (h - torch.diag(torch.diag(h))).pow(2).sum().item()
    sigma = math.sqrt(2 * off / tr.iterations)
    assert abs(tr.value - exact_trace) <= max(0.01 * abs(exact_trace), 4 * sigma)


def test_hvp_is_exact_per_vector():
    model, x = tiny_models()[1]
    model = model.double().eval()
    x = x.double()
    y = torch.zeros(len(x), dtype=torch.long)
    h = exact_hessian(model, x, y)
    v = torch.randn(h.shape[0], dtype=torch.float64)
    parts, i = [], 0
    for p in model.parameters():
        parts.append(v[i:i + p.numel()].view_as(p))
        i += p.numel()
    hv = torch.cat([t.flatten() for t in hessian.HVP(model, x, y, chunk=7)(parts)])
    assert torch.allclose(hv, h @ v, rtol=1e-8, atol=1e-10)
    # batched probes give the same products as one at a time
    batched = hessian.HVP(model, x, y)([torch.stack([q, 2 * q]) for q in parts], batched=True)
    flat = torch.cat([t[1].flatten() for t in batched])
    assert torch.allclose(flat, 2 * (h @ v), rtol=1e-8, atol=1e-10)


def test_probes_per_pass_does_not_change_the_estimate():
    model, x = tiny_models()[0]
    model.eval()
    y = torch.zeros(len(x), dtype=torch.long)
    hvp = hessian.HVP(model, x, y)
    one, many = (hessian.trace(hvp, 50, 1e-4, probes_per_pass=k,
                               generator=torch.Generator().manual_seed(3)) for k in (1, 8))
    assert one.iterations == many.iterations
    assert one.value == pytest.approx(many.value, rel=1e-5)


def test_agrees_with_pyhessian_on_a_small_cnn():
    pyhessian = pytest.importorskip("pyhessian")
    from landscape_taxonomy.training.models import build_model

    model = build_model("cnn", 2, (1, 8, 8), 10, seed=0).double()
    model.train()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)  # running statistics
    model.eval()
    theirs = pyhessian.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    torch.manual_seed(0)
    their_top = theirs.eigenvalues(maxIter=200, tol=1e-6)[0][0]
    torch.manual_seed(0)
    their_trace = sum(theirs.trace(maxIter=400, tol=1e-9)) / 400
    ours = hessian_of(model, x, y, samples="all", max_iter=200, tol=1e-6, repeats=1, chunk=1000,
                      seed=0)
    assert ours["top"] == pytest.approx(their_top, rel=1e-2)
    exact = torch.trace(exact_hessian(model, x, y)).item()
    ours_tr = hessian.trace(hessian.HVP(model, x, y), 400, 1e-9,
                            generator=torch.Generator().manual_seed(5)).value
    # two independent Hutchinson estimates of the same trace
    assert their_trace == pytest.approx(exact, rel=0.1)
    assert ours_tr == pytest.approx(exact, rel=0.1)


def test_rejects_a_model_in_train_mode():
    model, x = tiny_models()[1]
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        hessian.HVP(model, x, torch.zeros(len(x), dtype=torch.long))


def test_repeats_report_spread_and_sample_all():
    model, x = tiny_models()[0]
    model.eval()
    y = torch.randint(0, 3, (len(x),))
    r = hessian_of(model, x, y, samples=10, max_iter=50, tol=1e-4, repeats=3, chunk=1000, seed=0)
    assert len(r["runs"]) == 3 and all(run["samples"] == 10 for run in r["runs"])
    assert r["top_repeat_std"] > 0  # independent samples of 10 points differ
    full = hessian_of(model, x, y, samples="all", max_iter=50, tol=1e-4, repeats=1, chunk=16,
                      seed=0)
    assert full["runs"][0]["samples"] == len(y)


@pytest.mark.parametrize("arch", ["cnn", "mlp", "resnet18"])
def test_stacked_models_give_each_model_its_own_estimates(arch):
    from landscape_taxonomy.metrics.cell import hessian_of_models
    from landscape_taxonomy.training.models import build_model

    x = torch.randn(48, 1, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    y = torch.randint(0, 10, (48,), generator=torch.Generator().manual_seed(1))
    models = []
    for s in range(3):
        m = build_model(arch, 1, (1, 8, 8), 10, seed=s).double()
        with torch.no_grad():
            m.train()(x)  # distinct running statistics per model
        models.append(m.eval())
    kw = dict(samples=32, max_iter=50, tol=1e-4, repeats=2, chunk=1000, seed=0)
    alone = hessian_of_models(models, x, y, stack=False, **kw)
    stacked = hessian_of_models(models, x, y, stack=True, **kw)
    for a, b in zip(alone, stacked):
        for ra, rb in zip(a["runs"], b["runs"]):
            assert ra["top_iters"] == rb["top_iters"]
            assert ra["trace_probes"] == rb["trace_probes"]
            assert rb["top"] == pytest.approx(ra["top"], rel=1e-9)
            assert rb["trace"] == pytest.approx(ra["trace"], rel=1e-9)
    assert len({round(a["top"], 6) for a in alone}) == 3  # the models really differ
