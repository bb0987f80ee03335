"""Hessian top eigenvalue and trace of the plain cross-entropy, PyHessian's algorithms.

For the project's models (cnn, mlp, resnet18) both products come from hand-derived
second-order rules with everything direction-free kept (second_order.py): vᵀHv for
Hutchinson by one forward-mode pass, several probes at a time; H v for the power
iteration by the R-operator. Any other model, and stacked models, use autograd:

Hessian-vector products come from `torch.autograd.grad` twice (double backward), never
`backward(create_graph=True)`, which leaks the graph into `.grad` (PyHessian issues 25, 28).
When the sample fits in one chunk, the gradient graph is built once and reused by every
product, as PyHessian does for a single batch; larger samples (up to the whole training
set) are accumulated chunk by chunk, weighted by chunk size, so the product is that of the
mean loss over the sample.

Blocks: a stacked network of S models (training/stacked.py) has a block-diagonal Hessian, one block
per model, so one double backward gives all S products. Power iteration and Hutchinson then
run per block with per-block normalization and stopping; block s sees exactly the random
vectors a lone run of model s would, so its estimate is that run's. Every parameter tensor,
stacked or not, views as [S, numel/S] with block s in row s.

Eval-mode BatchNorm is folded into the convolution before it (fold.py): the same
function of the same parameters, with a much cheaper double backward.

Stopping rules are PyHessian's: stop when the relative change of the eigenvalue estimate,
or of the running mean of vᵀHv, is below tol (metrics.hessian.method: pyhessian). The
default estimators, Lanczos and a deflated trace with a standard error, are in
estimators.py and use these products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .fold import fold_batchnorm
from .second_order import SecondOrder, compile_model


def cross_entropy(model, x, y):
    return F.cross_entropy(model(x), y)


class HVP:
    """v -> H v, and vᵀHv for a batch of probes (`quad`), for the mean `loss(model, x, y)`
    of `model` (eval mode) on (x, y).

    engine: "auto" uses second_order.py when it covers the model (the plain cross-entropy
    of one model whose parameters all train), "autograd" always the double backward.
    """

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 chunk: int = 1000, loss=cross_entropy, blocks: int = 1, engine: str = "auto"):
        if model.training:
            raise ValueError("Hessian: the model must be in eval mode (BatchNorm running stats)")
        self.model = fold_batchnorm(model)  # same parameters, same order
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.loss, self.blocks, self.n = loss, blocks, len(y)
        self.chunks = [(x[i:i + chunk], y[i:i + chunk]) for i in range(0, self.n, chunk)]
        covered = (engine == "auto" and loss is cross_entropy and blocks == 1
                   and len(self.params) == len(list(model.parameters()))
                   and compile_model(model) is not None)
        self.second_order = SecondOrder(model, x, y, chunk) if covered else None
        self._grads = None
        if self.second_order is None and len(self.chunks) == 1:
            self._grads = self._grad(*self.chunks[0])

    def _grad(self, x, y):
        return torch.autograd.grad(self.loss(self.model, x, y), self.params, create_graph=True)

    def __call__(self, v: list[torch.Tensor], batched: bool = False) -> list[torch.Tensor]:
        """H v; with batched=True every tensor of v has a leading probe dimension [B, ...]."""
        if self.second_order is not None and not batched:
            return self.second_order.hvp(v)
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

    def quad(self, probes: list[list[torch.Tensor]]) -> list[list[float]]:
        """vᵀHv of each probe, block by block: [len(probes)][blocks]."""
        if self.second_order is not None:
            return [[q] for q in self.second_order.quad(probes).tolist()]
        if len(probes) == 1:
            return [self.block_dot(self(probes[0]), probes[0]).tolist()]
        hvs = self([torch.stack(t) for t in zip(*probes)], batched=True)  # [b, *shape]
        return [self.block_dot([h[j] for h in hvs], p).tolist() for j, p in enumerate(probes)]

    # -- per-block vector helpers -----------------------------------------------------

    def block_dot(self, a, b) -> torch.Tensor:
        """[S] inner products, block by block."""
        s = self.blocks
        return sum((x.reshape(s, -1) * y.reshape(s, -1)).sum(1) for x, y in zip(a, b))

    def draw(self, sampler) -> list[torch.Tensor]:
        """One vector, the same draw in every block (a lone model's draw, replicated)."""
        out = []
        for p in self.params:
            one = sampler(p.numel() // self.blocks).to(p)
            out.append(one.expand(self.blocks, -1).reshape(p.shape))
        return out


@dataclass
class Estimate:
    value: float
    iterations: int
    converged: bool
    se: float = math.nan  # Hutchinson: sample std of vᵀHv / √probes (power iteration: none)


def top_eigenvalues(hvp: HVP, max_iter: int, tol: float,
                    generator: torch.Generator | None = None) -> list[Estimate]:
    """Power iteration per block: the eigenvalue of largest magnitude (PyHessian's)."""
    s = hvp.blocks
    v = _normalize(hvp, hvp.draw(lambda n: torch.randn(n, generator=generator)))
    eig: list = [None] * s
    done: list = [None] * s
    for i in range(max_iter):
        hv = hvp(v)
        new = hvp.block_dot(hv, v).tolist()
        v = _normalize(hvp, hv)
        for b in range(s):
            if done[b] is not None:
                continue
            if eig[b] is not None and abs(eig[b] - new[b]) / (abs(eig[b]) + 1e-6) < tol:
                done[b] = Estimate(new[b], i + 1, True)
            eig[b] = new[b]
        if all(d is not None for d in done):
            break
    return [d or Estimate(eig[b], max_iter, False) for b, d in enumerate(done)]


def _normalize(hvp: HVP, v):
    norm = torch.sqrt(hvp.block_dot(v, v)) + 1e-6  # [S]
    return [(x.reshape(hvp.blocks, -1) / norm[:, None]).reshape(x.shape) for x in v]


def traces(hvp: HVP, max_iter: int, tol: float, probes_per_pass: int = 1,
           generator: torch.Generator | None = None) -> list[Estimate]:
    """Hutchinson per block: mean of vᵀHv over Rademacher v, PyHessian's stopping rule.

    With probes_per_pass > 1 several probes go through one pass (forward-mode, or a batched
    double backward); they are drawn and consumed in the one-at-a-time order, so the
    estimates do not change: at most probes_per_pass − 1 products are computed in vain.
    """
    s = hvp.blocks
    sums, counts, est = [0.0] * s, [0] * s, [0.0] * s
    squares = [0.0] * s
    done: list = [None] * s
    drawn = 0

    def rademacher(n):
        return torch.randint(0, 2, (n,), generator=generator) * 2 - 1

    while drawn < max_iter and any(d is None for d in done):
        b = min(probes_per_pass, max_iter - drawn)
        vhv = hvp.quad([hvp.draw(rademacher) for _ in range(b)])
        drawn += b
        for q in vhv:
            for k in range(s):
                if done[k] is not None:
                    continue
                sums[k] += q[k]
                squares[k] += q[k] * q[k]
                counts[k] += 1
                mean = sums[k] / counts[k]
                if abs(mean - est[k]) / (abs(est[k]) + 1e-6) < tol:
                    se = _se(sums[k], squares[k], counts[k])
                    done[k] = Estimate(mean, counts[k], True, se)
                est[k] = mean
    return [d or Estimate(est[k], counts[k], False, _se(sums[k], squares[k], counts[k]))
            for k, d in enumerate(done)]


def _se(total: float, squares: float, n: int) -> float:
    """Standard error of the mean of n values from their sum and sum of squares (the
    estimate itself stays the running mean PyHessian's rule stops on)."""
    if n < 2:
        return math.nan
    var = max(squares - total * total / n, 0.0) / (n - 1)
    return math.sqrt(var / n)


def top_eigenvalue(hvp: HVP, max_iter: int, tol: float,
                   generator: torch.Generator | None = None) -> Estimate:
    return top_eigenvalues(hvp, max_iter, tol, generator)[0]


def trace(hvp: HVP, max_iter: int, tol: float, probes_per_pass: int = 1,
          generator: torch.Generator | None = None) -> Estimate:
    return traces(hvp, max_iter, tol, probes_per_pass, generator)[0]
