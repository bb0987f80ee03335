"""Lanczos and the deflated trace against exact float64 Hessians of tiny models."""

from __future__ import annotations

import torch
from test_hessian import exact_hessian, tiny_models

from landscape_taxonomy.metrics import estimators, hessian
from landscape_taxonomy.models import build_model


def setup(which):
    model, x = tiny_models()[which]
    model, x = model.double().eval(), x.double()
    y = torch.randint(0, 3, (len(x),), generator=torch.Generator().manual_seed(1))
    return hessian.HVP(model, x, y), exact_hessian(model, x, y)


def cnn_case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g)
    model = build_model("cnn", 2, (1, 8, 8), 10, seed=0).double()
    with torch.no_grad():
        model.train()(x)
    model.eval()
    return hessian.HVP(model, x, y), exact_hessian(model, x, y)


def test_lanczos_top_k_equals_exact_eigenvalues_and_power_iteration():
    hvp, h = cnn_case()
    exact = torch.linalg.eigvalsh(h).flip(0)[:3]
    c = estimators.curvature(hvp, top_k=3, max_iter=200, tol=1e-8, min_steps=20,
                             generator=torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(torch.tensor(c.eigenvalues, dtype=torch.float64), exact,
                               rtol=1e-6, atol=0)
    assert c.eig_converged and max(c.residuals) < 1e-5 * exact[0].item()
    power = hessian.top_eigenvalue(hvp, 1000, 1e-9, torch.Generator().manual_seed(0))
    assert abs(power.value - c.top) <= 1e-3 * abs(c.top)


def test_deflated_trace_is_within_its_se():
    hvp, h = cnn_case()
    exact = torch.trace(h).item()
    zs = []
    for seed in range(8):
        # An untrained cnn: a flat spectrum, little to deflate; the probe budget may end
        # first, and then the SE must say how far off the estimate is.
        c = estimators.curvature(hvp, min_steps=10, rel_se=0.01, min_probes=16,
                                 max_probes=400, generator=torch.Generator().manual_seed(seed))[0]
        if c.trace_converged:
            assert c.trace_se <= 0.01 * abs(c.trace)
            assert abs(c.trace - exact) <= 0.03 * abs(exact)
        zs.append((c.trace - exact) / c.trace_se)
    # honest SE: |z| small for every seed, and the z's not all tiny (an SE inflated tenfold
    # would pass the first check alone)
    assert max(abs(z) for z in zs) < 4
    assert sum(z * z for z in zs) / len(zs) > 0.05


def test_same_seed_same_numbers_and_tiny_models_exact():
    for which in (0, 1):
        hvp, h = setup(which)
        a, b = (estimators.curvature(hvp, min_steps=100,
                                     generator=torch.Generator().manual_seed(3))[0]
                for _ in range(2))
        assert a == b
        # fewer parameters than Lanczos steps: the Krylov space is everything, trace exact
        assert abs(a.trace - torch.trace(h).item()) <= 1e-6 * abs(torch.trace(h).item())
