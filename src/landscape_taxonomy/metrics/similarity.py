"""Global similarity of two models: linear CKA of their softmax outputs, and L2 distance.

    CKA(X, Y) = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F),  X, Y [n, d] column-centred

accumulated in float64. The debiased option uses the unbiased HSIC estimator (Song et al.
2012) on Gram matrices; it can go negative or 0/0 on small n, and then CKA is NaN rather
than a made-up number.
"""

from __future__ import annotations

import math

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA of features x [n, d1] and y [n, d2] of the same n points."""
    x, y = x.double(), y.double()
    if debiased:
        return _debiased_cka(x @ x.T, y @ y.T)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    num = (y.T @ x).pow(2).sum()
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return (num / den).item() if den > 0 else math.nan


def gram_cka(k: torch.Tensor, l: torch.Tensor) -> float:
    """CKA from Gram matrices with the centering matrix H = I − 11ᵀ/n (the textbook form)."""
    n = k.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    kc, lc = h @ k.double() @ h, h @ l.double() @ h
    return ((kc * lc).sum() / (kc.norm() * lc.norm())).item()


def _unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    k, l = k.clone(), l.clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones = torch.ones(n, dtype=k.dtype)
    term = (k * l).sum() + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
    term = term - 2.0 / (n - 2) * (ones @ k @ l @ ones)
    return term / (n * (n - 3))


def _debiased_cka(k: torch.Tensor, l: torch.Tensor) -> float:
    if k.shape[0] < 4:
        return math.nan
    xy, xx, yy = _unbiased_hsic(k, l), _unbiased_hsic(k, k), _unbiased_hsic(l, l)
    if not (xx > 0 and yy > 0) or not torch.isfinite(xy):
        return math.nan
    return (xy / torch.sqrt(xx * yy)).item()


def mixup_points(x: torch.Tensor, n: int, alpha: float, seed: int) -> torch.Tensor:
    """n points, each λ x_i + (1-λ) x_j of two random training images, λ ~ Beta(α, α)."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, len(x), (n,), generator=g)
    j = torch.randint(0, len(x), (n,), generator=g)
    lam = _beta(n, alpha, g).view(-1, *([1] * (x.dim() - 1))).to(x)
    return lam * x[i.to(x.device)] + (1 - lam) * x[j.to(x.device)]


def _beta(n: int, alpha: float, g: torch.Generator) -> torch.Tensor:
    """Beta(α, α) = G₁/(G₁+G₂) of two Gamma(α) draws; torch's Beta takes no generator."""
    g1, g2 = _gamma(n, alpha, g), _gamma(n, alpha, g)
    return (g1 / (g1 + g2)).float()


def _gamma(n: int, alpha: float, g: torch.Generator) -> torch.Tensor:
    # Marsaglia–Tsang for alpha >= 1 (α < 1 via the boost Gamma(α+1)·U^(1/α)).
    boost = alpha < 1
    a = alpha + 1 if boost else alpha
    d = a - 1.0 / 3
    c = 1.0 / math.sqrt(9 * d)
    out = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while len(todo):
        z = torch.randn(len(todo), generator=g, dtype=torch.float64)
        u = torch.rand(len(todo), generator=g, dtype=torch.float64)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if boost:
        out = out * torch.rand(n, generator=g, dtype=torch.float64) ** (1 / alpha)
    return out


def l2_distance(state_a: dict, state_b: dict, param_names) -> float:
    """‖θ_a − θ_b‖₂ over trainable parameters (BatchNorm buffers excluded)."""
    sq = sum((state_a[k].double() - state_b[k].double()).pow(2).sum() for k in param_names)
    return math.sqrt(float(sq))
