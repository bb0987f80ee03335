"""Hessian top eigenvalue and trace of the plain cross-entropy, PyHessian's algorithms.

Hessian-vector products come from `torch.autograd.grad` twice (double backward), never
`backward(create_graph=True)`, which leaks the graph into `.grad` (PyHessian issues 25, 28).
When the sample fits in one chunk, the gradient graph is built once and reused by every
product, as PyHessian does for a single batch; larger samples (up to the whole training
set) are accumulated chunk by chunk, weighted by chunk size, so the product is that of the
mean loss over the sample.

Power iteration and Hutchinson follow PyHessian's stopping rules exactly: stop when the
relative change of the eigenvalue estimate, or of the running mean of vᵀHv, is below tol.
Several Hutchinson probes go through one batched double-backward (`is_grads_batched`); they
are consumed in order, so the estimate equals the one-probe-at-a-time loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


class HVP:
    """v -> H v for the mean cross-entropy of `model` (eval mode) on (x, y)."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 chunk: int = 1000):
        if model.training:
            raise ValueError("Hessian: the model must be in eval mode (BatchNorm running stats)")
        self.model, self.params = model, [p for p in model.parameters() if p.requires_grad]
        self.n = len(y)
        self.chunks = [(x[i:i + chunk], y[i:i + chunk]) for i in range(0, self.n, chunk)]
        self._grads = self._grad(*self.chunks[0]) if len(self.chunks) == 1 else None

    def _grad(self, x, y):
        loss = F.cross_entropy(self.model(x), y)
        return torch.autograd.grad(loss, self.params, create_graph=True)

    def __call__(self, v: list[torch.Tensor], batched: bool = False) -> list[torch.Tensor]:
        """H v; with batched=True every tensor of v has a leading probe dimension [B, ...]."""
        if self._grads is not None:
            return self._product(self._grads, v, batched, retain=True)
        out = None
        for x, y in self.chunks:
            w = len(y) / self.n
            hv = self._product(self._grad(x, y), v, batched, retain=False)
            out = [w * h for h in hv] if out is None else [o + w * h for o, h in zip(out, hv)]
        return out

    def _product(self, grads, v, batched, retain):
        hv = torch.autograd.grad(grads, self.params, grad_outputs=v, retain_graph=retain,
                                 is_grads_batched=batched)
        return [h.detach() for h in hv]


def _dot(a, b):
    return sum((x * y).sum() for x, y in zip(a, b))


def _normalize(v):
    norm = torch.sqrt(_dot(v, v))
    return [x / (norm + 1e-6) for x in v]


@dataclass
class Estimate:
    value: float
    iterations: int
    converged: bool


def top_eigenvalue(hvp: HVP, max_iter: int = 100, tol: float = 1e-3,
                   generator: torch.Generator | None = None) -> Estimate:
    """Power iteration: the eigenvalue of largest magnitude, as PyHessian's `eigenvalues()`."""
    v = _normalize([torch.randn(p.shape, generator=generator).to(p) for p in hvp.params])
    eig = None
    for i in range(max_iter):
        hv = hvp(v)
        new = _dot(hv, v).item()
        v = _normalize(hv)
        if eig is not None and abs(eig - new) / (abs(eig) + 1e-6) < tol:
            return Estimate(new, i + 1, True)
        eig = new
    return Estimate(eig, max_iter, False)


def trace(hvp: HVP, max_iter: int = 100, tol: float = 1e-3, probes_per_pass: int = 8,
          generator: torch.Generator | None = None) -> Estimate:
    """Hutchinson: mean of vᵀHv over Rademacher v, PyHessian's `trace()` stopping rule."""
    samples, est = [], 0.0
    while len(samples) < max_iter:
        b = min(probes_per_pass, max_iter - len(samples))
        # Rademacher probes drawn probe by probe (the one-at-a-time order), stacked [b, *shape].
        draws = [[torch.randint(0, 2, p.shape, generator=generator) for p in hvp.params]
                 for _ in range(b)]
        vs = [torch.stack(d).to(p) * 2 - 1 for d, p in zip(zip(*draws), hvp.params)]
        hvs = hvp(vs, batched=b > 1) if b > 1 else [h[None] for h in hvp([v[0] for v in vs])]
        vhv = sum((h * v).flatten(1).sum(1) for h, v in zip(hvs, vs)).tolist()  # [b]
        for q in vhv:
            samples.append(q)
            mean = sum(samples) / len(samples)
            if abs(mean - est) / (abs(est) + 1e-6) < tol:
                return Estimate(mean, len(samples), True)
            est = mean
    return Estimate(est, len(samples), False)
