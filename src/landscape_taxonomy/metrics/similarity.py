"""Global similarity of two models: linear CKA of their softmax outputs, and L2 distance.

    CKA(X, Y) = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F),  X, Y [n, d] column-centred

accumulated in float64. The debiased option uses the unbiased HSIC estimator (Song et al.
2012) on Gram matrices; it can go negative or 0/0 on small n, and then CKA is NaN rather
than a made-up number.
"""

from __future__ import annotations

import math

import numpy as np
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
    """n points, each λ x_i + (1-λ) x_j of two random training images, λ ~ Beta(α, α).

    i, j and λ come from numpy's seeded Generator, so a seed gives the same points on any
    machine and device, and nothing touches torch's global random state.
    """
    rng = np.random.default_rng(seed)
    i = torch.from_numpy(rng.integers(0, len(x), n)).to(x.device)
    j = torch.from_numpy(rng.integers(0, len(x), n)).to(x.device)
    lam = torch.from_numpy(rng.beta(alpha, alpha, n)).to(x).view(-1, *([1] * (x.dim() - 1)))
    return lam * x[i] + (1 - lam) * x[j]


def l2_distance(state_a: dict, state_b: dict, param_names) -> float:
    """‖θ_a − θ_b‖₂ over trainable parameters (BatchNorm buffers excluded)."""
    sq = sum((state_a[k].double() - state_b[k].double()).pow(2).sum() for k in param_names)
    return math.sqrt(float(sq))
