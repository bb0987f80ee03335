"""The Hessian's eigenvalue density by stochastic Lanczos quadrature (SLQ), as PyHessian's
`density()` gives it (Ghorbani et al. 2019; Lin et al. 2016).

For a unit start vector v, m Lanczos steps give T = QᵀHQ with eigenpairs (θ_k, y_k); the
θ_k are Gauss quadrature nodes and τ_k = (e₁ᵀy_k)² = (vᵀ u_k)² their weights (u_k = Q y_k,
the Ritz vector), so that Σ τ_k f(θ_k) ≈ vᵀ f(H) v, exactly for polynomials f of degree
< 2m. With v uniform on the sphere E[vᵀ f(H) v] = tr f(H) / n: averaged over probes the
weighted nodes are the spectral measure (1/n) Σ_i δ(λ − λ_i), and smoothed by a Gaussian
they are a density that integrates to 1. Its mean is tr(H)/n and its right edge λ_max.

Only the estimators' Lanczos (full reorthogonalization) is used, with tol 0 so that it
runs all `steps` (or stops at an invariant subspace, where the quadrature is exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# torch only where Lanczos runs: compute-metrics' stage process smooths the cells' stored
# quadratures (combine, smooth) and never imports it.


@dataclass
class Density:
    nodes: list[float]  # Ritz values of every probe, concatenated
    weights: list[float]  # their quadrature weights, each probe's summing to 1/probes

    def smooth(self, points: int = 200, sigma: float | None = None,
               lo: float | None = None, hi: float | None = None):
        """(grid [points], density [points]): the nodes as Gaussians of width sigma (default
        1% of the nodes' range) on a grid 3 sigma past them."""
        nodes, w = np.asarray(self.nodes), np.asarray(self.weights)
        span = float(nodes.max() - nodes.min()) or max(abs(float(nodes.max())), 1.0)
        sigma = sigma or 0.01 * span
        lo = nodes.min() - 3 * sigma if lo is None else lo
        hi = nodes.max() + 3 * sigma if hi is None else hi
        grid = np.linspace(lo, hi, points)
        z = (grid[:, None] - nodes[None, :]) / sigma
        dens = (np.exp(-0.5 * z * z) * w[None, :]).sum(1) / (sigma * np.sqrt(2 * np.pi))
        return grid, dens


def spectral_density(hvp, *, steps: int = 50, probes: int = 1, generator=None) -> Density:
    """SLQ of the Hessian `hvp` (hessian.HVP of one model): `probes` Lanczos runs of
    `steps` steps from independent random unit vectors (drawn from `generator`, a
    torch.Generator)."""
    from .estimators import lanczos

    if hvp.blocks != 1:
        raise ValueError("spectral_density: one model at a time (blocks=1)")
    def quadrature():  # one probe: the run's own (Ritz values, weights)
        _, ((*_, quad),) = lanczos(hvp, top_k=1, max_iter=steps, tol=0.0, min_steps=steps,
                                   generator=generator)
        return quad
    return combine(quadrature() for _ in range(probes))


def combine(quadratures) -> Density:
    """Several runs' (nodes, weights), each summing to 1, as one density: their average
    (a model's probes; a cell's models: the mean spectrum of their Hessians)."""
    quadratures = list(quadratures)
    nodes, weights = [], []
    for theta, tau in quadratures:
        nodes += list(theta)
        weights += [t / len(quadratures) for t in tau]
    return Density(nodes, weights)


def cell_density(per_model: list[dict], points: int = 100):
    """(grid [points], density [points]) of a cell: the quadratures its models' first
    Hessian run recorded (cell_metrics' hessian_runs, method lanczos), averaged; None when
    there are none (method pyhessian, or every model diverged)."""
    runs = [m["hessian_runs"][0] for m in per_model if m.get("hessian_runs")]
    quads = [(r["slq_nodes"], r["slq_weights"]) for r in runs if r.get("slq_nodes")]
    if not quads:
        return None
    return combine(quads).smooth(points)
