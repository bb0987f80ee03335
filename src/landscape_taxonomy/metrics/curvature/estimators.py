"""Curvature with error bars: Lanczos top eigenvalues and a deflated Hutchinson trace.

PyHessian's rules (hessian.py) stop when the estimate stops moving, which says nothing of
how far it is from the truth: its Hutchinson trace ended after 4-82 probes on the default
grid, 12-18% apart across probe sets. Here every number comes with its error:

Lanczos (full reorthogonalization, every block of a stacked network on its own). The
Krylov basis Q of `steps` H v products gives T = QᵀHQ (tridiagonal); the top_k eigenvalues
of T (Ritz values) are the estimates, and each is reported with the residual ‖Hv − λv‖ of
its Ritz vector, measured by one more product (not Lanczos' own bound, which rounding can
make optimistic). It runs at least `min_steps` and stops when the top_k residuals are below
tol·|λ₁| or at max_iter.

Trace, deflated (the same idea as Hutch++, Meyer et al. 2021, with the Krylov basis as the
sketch): tr H = tr(QᵀHQ) + tr((I−P)H(I−P)), P = QQᵀ, because tr(PH(I−P)) = 0. The first term
is exact, Σ αᵢ of Lanczos. The second is Hutchinson on w = (I−P)v with Rademacher v:
wᵀHw by the fast forward-mode vᵀHv (second_order.quad). Q is drawn before the probes and
does not depend on them, so the estimate is unbiased; the Hessian's large outlier
eigenvalues (one per class) sit in Q, so what Hutchinson still sees varies much less.
Probes are drawn until SE/|estimate| ≤ rel_se (SE = sample std / √m, after at least
min_probes) or max_probes: the SE is reported, and 2·SE bounds the probe error at about
95%. Where the trace is known exactly (ggn.py: the project's models), it is passed in and
no probe is drawn.

Everything is seeded by the generator passed in: same seed, same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Curvature:
    eigenvalues: list[float]  # the top_k largest, descending
    residuals: list[float]  # ‖Hv − λv‖ of each Ritz pair (v of unit norm)
    steps: int  # Lanczos steps, the dimension of the deflation subspace
    eig_converged: bool
    trace: float
    trace_se: float
    trace_probes: int
    trace_converged: bool
    deflated: float  # tr(QᵀHQ), the exact part of the trace
    trace_method: str  # "exact" (given: ggn.py) or "hutchinson" (deflated, probes above)
    hvps: int  # H v products (Lanczos and residual checks); probes are vᵀHv passes
    # The Lanczos run's Gauss quadrature of the spectrum (density.py): every Ritz value of T
    # and its weight (e₁ᵀy)², summing to 1. One probe of stochastic Lanczos quadrature,
    # free: the same steps as the eigenvalues.
    nodes: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def top(self) -> float:
        return self.eigenvalues[0]

    @property
    def top_residual(self) -> float:
        return self.residuals[0]


class _Flat:
    """The parameter list of an HVP as [S, n] rows, one per block, and back."""

    def __init__(self, hvp):
        self.hvp, self.s = hvp, hvp.blocks
        self.shapes = [p.shape for p in hvp.params]
        self.sizes = [p.numel() // self.s for p in hvp.params]

    def flat(self, parts) -> torch.Tensor:
        return torch.cat([t.reshape(self.s, -1) for t in parts], 1)

    def parts(self, rows: torch.Tensor) -> list[torch.Tensor]:
        return [c.reshape(sh) for c, sh in zip(rows.split(self.sizes, 1), self.shapes)]

    def matvec(self, rows):
        return self.flat(self.hvp(self.parts(rows)))


def lanczos(hvp, *, top_k: int, max_iter: int, tol: float, min_steps: int,
            generator: torch.Generator | None = None):
    """Q [m_max, S, n] and per block (m, alphas, top Ritz values, their Ritz vectors [k, n],
    converged, (all m Ritz values, their quadrature weights)). Block s stops at its own
    step; a lone run of model s stops at the same one."""
    f = _Flat(hvp)
    s = f.s
    n = sum(f.sizes)
    cap = min(max_iter, n)  # a Krylov space has at most n dimensions
    q = f.flat(hvp.draw(lambda k: torch.randn(k, generator=generator)))
    q = q / q.norm(dim=1, keepdim=True)
    basis, alphas, betas = [q], [[] for _ in range(s)], [[] for _ in range(s)]
    stop: list = [None] * s  # (steps, converged) per block
    for j in range(cap):
        w = f.matvec(basis[-1])
        a = (w * basis[-1]).sum(1)
        Q = torch.stack(basis)  # [j+1, S, n]
        # full reorthogonalization, twice (Gram-Schmidt once loses orthogonality in float32)
        for _ in range(2):
            w = w - torch.einsum("js,jsn->sn", torch.einsum("jsn,sn->js", Q, w), Q)
        b = w.norm(dim=1)
        for k in range(s):
            if stop[k] is not None:
                continue
            alphas[k].append(float(a[k]))
            steps = j + 1
            theta, resid = _ritz(alphas[k], betas[k], float(b[k]), top_k)
            small = float(b[k]) <= 1e-6 * max(abs(theta[0]), 1e-30)  # invariant subspace
            ok = small or (steps >= min(min_steps, cap)
                           and max(resid) <= tol * max(abs(theta[0]), 1e-30))
            if ok or steps == cap:
                stop[k] = (steps, ok)
            else:
                betas[k].append(float(b[k]))
        if all(st is not None for st in stop):
            break
        basis.append(w / b.clamp_min(1e-30)[:, None])
    Q = torch.stack(basis)  # [m, S, n]
    out = []
    for k in range(s):
        m, ok = stop[k]
        evals, evecs = _tridiag_eig(alphas[k], betas[k][:m - 1])
        order = np.argsort(evals)[::-1][:top_k]
        y = torch.as_tensor(evecs[:, order].T.copy(), dtype=Q.dtype, device=Q.device)
        # v = Q e₁ (Q orthonormal), so vᵀu_i = e₁ᵀy_i: the weights need no n-vector
        w = evecs[0] ** 2
        quadrature = (evals.tolist(), (w / w.sum()).tolist())
        out.append((m, alphas[k][:m], [float(evals[i]) for i in order],
                    y @ Q[:m, k], ok, quadrature))  # Ritz vectors [k, n]
    return Q, out


def _tridiag_eig(alphas, betas):
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if betas:
        off = np.asarray(betas, dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return np.linalg.eigh(t)


def _ritz(alphas, betas, b_next, top_k):
    """Top Ritz values of T and Lanczos' residual estimates |β_{m} y_m|."""
    evals, evecs = _tridiag_eig(alphas, betas)
    order = np.argsort(evals)[::-1][:top_k]
    return [float(evals[i]) for i in order], [abs(b_next * evecs[-1, i]) for i in order]


def curvature(hvp, *, top_k: int = 1, max_iter: int = 100, tol: float = 1e-3,
              min_steps: int = 20, rel_se: float = 0.01, min_probes: int = 16,
              max_probes: int = 1000, probes_per_pass: int = 1,
              generator: torch.Generator | None = None,
              exact_traces: list[float] | None = None) -> list[Curvature]:
    """Top eigenvalues and deflated trace of each block of `hvp` (hessian.HVP).
    exact_traces: each block's trace, known exactly; then it is reported with SE 0 and no
    probe is drawn."""
    f = _Flat(hvp)
    s = f.s
    Q, lz = lanczos(hvp, top_k=top_k, max_iter=max_iter, tol=tol, min_steps=min_steps,
                    generator=generator)
    hvps = max(m for m, *_ in lz)
    # Residuals of the Ritz pairs, explicitly: the i-th Ritz vector of every block at once.
    residuals = [[] for _ in range(s)]
    for i in range(min(len(r[2]) for r in lz)):
        v = torch.stack([r[3][i] for r in lz])  # [S, n]
        v = v / v.norm(dim=1, keepdim=True)
        hv = f.matvec(v)
        hvps += 1
        for k in range(s):
            residuals[k].append(float((hv[k] - lz[k][2][i] * v[k]).norm()))
    # Deflation basis per block: block k keeps its first m_k vectors.
    m_max = Q.shape[0]
    mask = torch.zeros(m_max, s, dtype=Q.dtype, device=Q.device)
    for k, (m, *_) in enumerate(lz):
        mask[:m, k] = 1
    deflated = [math.fsum(r[1]) for r in lz]

    def rademacher(n):
        return torch.randint(0, 2, (n,), generator=generator) * 2 - 1

    def project(v):
        w = f.flat(v).to(Q.dtype)
        c = torch.einsum("jsn,sn->js", Q, w) * mask
        return f.parts(w - torch.einsum("js,jsn->sn", c, Q))

    stats = [_Running() for _ in range(s)]
    done: list = [None if exact_traces is None else True] * s  # exact: nothing to probe
    drawn = 0
    while drawn < max_probes and any(d is None for d in done):
        b = min(probes_per_pass, max_probes - drawn)
        vhv = hvp.quad([project(hvp.draw(rademacher)) for _ in range(b)])
        drawn += b
        for q in vhv:  # consumed one at a time: the stopping point does not depend on b
            for k in range(s):
                if done[k] is not None:
                    continue
                st = stats[k]
                st.add(q[k])
                est, se = deflated[k] + st.mean, st.se
                if st.n >= min_probes and se <= rel_se * abs(est):
                    done[k] = True
    out = []
    for k, (m, _, evals, _, ok, (nodes, weights)) in enumerate(lz):
        st = stats[k]
        if exact_traces is not None:
            trace, se, method = float(exact_traces[k]), 0.0, "exact"
        else:
            trace, se, method = deflated[k] + st.mean, st.se, "hutchinson"
        out.append(Curvature(eigenvalues=evals, residuals=residuals[k], steps=m,
                             eig_converged=ok, trace=trace, trace_se=se, trace_probes=st.n,
                             trace_converged=done[k] is not None, deflated=deflated[k],
                             trace_method=method, hvps=hvps, nodes=nodes, weights=weights))
    return out


class _Running:
    """Welford's mean and variance in float64."""

    def __init__(self):
        self.n, self.mean, self._m2 = 0, 0.0, 0.0

    def add(self, x: float):
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self._m2 += d * (x - self.mean)

    @property
    def se(self) -> float:
        if self.n < 2:
            return math.inf if self.n == 0 else math.nan
        return math.sqrt(self._m2 / (self.n - 1) / self.n)
