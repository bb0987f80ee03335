"""Lanczos and the deflated trace against exact float64 Hessians of tiny models."""

from __future__ import annotations

import math

import numpy as np
import torch
from test_hessian import exact_hessian, tiny_models

from landscape_taxonomy.metrics.curvature import density, estimators, hessian
from landscape_taxonomy.training.models import build_model


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


# -- spectral density (SLQ) --------------------------------------------------------------

def test_slq_with_a_full_krylov_space_is_the_exact_spectral_measure():
    # mlp 4-5-3: 43 parameters. With as many steps as parameters the quadrature is exact:
    # its nodes are H's eigenvalues and its weights v's squared components along them, so
    # Σ τ θ^p = vᵀHᵖv for every p; the density's mean is the probe's Rayleigh quotient.
    hvp, h = setup(0)
    n = h.shape[0]
    lam, vecs = torch.linalg.eigh(h)
    g = torch.Generator().manual_seed(3)
    d = density.spectral_density(hvp, steps=n, probes=1, generator=g)
    v = torch.Generator().manual_seed(3)  # the same start vector Lanczos drew
    start = torch.cat([torch.randn(p.numel(), generator=v).double() for p in hvp.params])
    start = start / start.norm()
    nodes, w = torch.tensor(d.nodes), torch.tensor(d.weights)
    assert abs(w.sum().item() - 1) < 1e-9
    for power in (1, 2, 3):
        want = (start @ torch.linalg.matrix_power(h, power) @ start).item()
        got = (w * nodes ** power).sum().item()
        assert abs(got - want) <= 1e-7 * max(1.0, abs(lam).max().item() ** power)
    assert abs(nodes.max() - lam.max()) <= 1e-6 * lam.abs().max()
    assert abs(nodes.min() - lam.min()) <= 1e-6 * lam.abs().max()
    grid, dens = d.smooth(points=2000)
    assert abs(np.trapezoid(dens, grid) - 1) < 1e-3


def test_curvature_carries_its_lanczos_quadrature():
    # The Lanczos run behind the top eigenvalue is one probe of SLQ: after its m steps the
    # weighted Ritz values reproduce vᵀHᵖv (exact for p < 2m) from its own start vector.
    hvp, h = cnn_case()
    c = estimators.curvature(hvp, min_steps=12, tol=1e-3,
                             generator=torch.Generator().manual_seed(5))[0]
    v = torch.Generator().manual_seed(5)
    start = torch.cat([torch.randn(p.numel(), generator=v).double() for p in hvp.params])
    start = start / start.norm()
    nodes, w = torch.tensor(c.nodes), torch.tensor(c.weights)
    assert len(c.nodes) == c.steps < h.shape[0] and abs(w.sum().item() - 1) < 1e-9
    top = torch.linalg.eigvalsh(h).max().item()
    for power in (1, 2, 3, 5):
        want = (start @ torch.linalg.matrix_power(h, power) @ start).item()
        assert abs((w * nodes ** power).sum().item() - want) <= 1e-7 * top ** power
    assert max(c.nodes) == c.top
    both = density.combine([(c.nodes, c.weights), ([1.0, 2.0], [0.5, 0.5])])
    assert abs(sum(both.weights) - 1) < 1e-12 and len(both.nodes) == c.steps + 2


def test_slq_density_mean_estimates_trace_over_n_within_its_exact_spread():
    hvp, h = cnn_case()
    n = h.shape[0]
    lam = torch.linalg.eigvalsh(h)
    probes = 8
    d = density.spectral_density(hvp, steps=40, probes=probes,
                                 generator=torch.Generator().manual_seed(0))
    nodes, w = np.asarray(d.nodes), np.asarray(d.weights)
    mean = float((nodes * w).sum())
    tr, tr2 = lam.sum().item(), (lam ** 2).sum().item()
    # v uniform on the sphere: Var[vᵀHv] = 2 (n tr H² − (tr H)²) / (n² (n + 2))
    sd = math.sqrt(2 * (n * tr2 - tr * tr) / (n * n * (n + 2)) / probes)
    assert abs(mean - tr / n) <= 4 * sd
    assert abs(nodes.max() - lam.max().item()) <= 1e-6 * lam.max().item()  # the edge


def test_api_spectral_density_is_seeded_and_integrates_to_one():
    from landscape_taxonomy import api
    from landscape_taxonomy.report.charts import density_chart
    model = build_model("cnn", 1, (1, 8, 8), 10, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 1, 8, 8, generator=g), torch.randint(0, 10, (80,), generator=g)
    a = api.spectral_density(model, x, y, steps=15, probes=2, seed=1, samples=50)
    b = api.spectral_density(model, x, y, steps=15, probes=2, seed=1, samples=50)
    assert a == b and a["samples"] == 50 and len(a["nodes"]) == 30
    assert abs(np.trapezoid(a["density"], a["grid"]) - 1) < 1e-2
    assert density_chart(a["grid"], a["density"]).to_dict()["mark"]["type"] == "line"
