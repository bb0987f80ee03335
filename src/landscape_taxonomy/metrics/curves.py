"""Mode connectivity: a quadratic Bezier curve between two trained models (Garipov et al.).

    γ(t) = (1-t)² θ₁ + 2t(1-t) φ + t² θ₂,   endpoints fixed, bend φ trained

The curve is evaluated with `torch.func.functional_call` over the plain model, so any
architecture works without hand-written curve layers. The bend starts at the linear
midpoint (θ₁+θ₂)/2 (Garipov's choice; the paper's code starts it at random). At every t
BatchNorm statistics are recomputed on the training set before measuring the training
error: the endpoints' running statistics do not belong to interior points
(dnn-mode-connectivity issue 8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..errors import CurveError
from ..training.models import fast_layout, has_batchnorm
from ..training.optim import FusedSGD
from .curvature.fold import fold_batchnorm, folded_names


def params_of(state: dict, model: torch.nn.Module) -> dict:
    names = {n for n, _ in model.named_parameters()}
    return {k: v for k, v in state.items() if k in names}


def bezier(t: float, a: dict, bend: dict, b: dict) -> dict:
    return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * bend[k] + t ** 2 * b[k] for k in a}


def linear(t: float, a: dict, b: dict) -> dict:
    return {k: (1 - t) * a[k] + t * b[k] for k in a}


def curve_lr_factor(progress: float) -> float:
    """Garipov's schedule: x1 for the first half, linear to x0.01 at 90%, then x0.01."""
    if progress <= 0.5:
        return 1.0
    if progress <= 0.9:
        return 1.0 - (progress - 0.5) / 0.4 * 0.99
    return 0.01


def _flat(d: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in d.values()])


def _unflat(flat: torch.Tensor, like: dict) -> dict:
    """Views of one flat vector shaped like `like` (no copies; gradients flow through)."""
    parts = torch.split(flat, [v.numel() for v in like.values()])
    return {k: p.view(v.shape) for (k, v), p in zip(like.items(), parts)}


def caller(model):
    """state, x -> model(x) with `state` in place of its parameters and buffers.
    functional_call's check for tied weights walks every module on every call (5% of a curve
    step); it is skipped for models that share no parameter between two names, where it
    does nothing."""
    tied = len(list(model.named_parameters(remove_duplicate=False))) != len(
        list(model.named_parameters()))
    return lambda state, x: functional_call(model, state, (x,), tie_weights=tied)


def in_layout(weights: dict, fmt: torch.memory_format) -> dict:
    """Convolution weights in the layout the inputs use (a copy of a few small tensors)."""
    return {k: v.contiguous(memory_format=fmt) if v.dim() == 4 else v for k, v in weights.items()}


def fit_bend(model, a: dict, b: dict, x, y, *, epochs: int, lr: float, momentum: float,
             batch_size: int, weight_decay: float, seed: int) -> dict:
    """Train φ by SGD on L(γ(t)) + wd/2 ‖γ(t)‖², t ~ U(0, 1) each step.

    θ₁, θ₂ and φ are single flat vectors, so γ(t) and its norm are three fused operations
    per step rather than a handful per parameter tensor.
    """
    fa, fb = _flat(a), _flat(b)
    bend = ((fa + fb) / 2).requires_grad_(True)  # [P], starts at the linear midpoint
    opt = FusedSGD([bend], lr=lr, momentum=momentum)  # torch's fused SGD, minus its dynamo
    # BatchNorm trains on batch statistics; its running buffers are scratch copies here.
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    g = torch.Generator().manual_seed(seed)
    n, skip_single = len(y), has_batchnorm(model)
    fmt = fast_layout(model, x.device)
    call = caller(model)
    model.train()
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * curve_lr_factor(epoch / epochs)
        perm = torch.randperm(n, generator=g).to(x.device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if skip_single and len(idx) == 1:
                continue
            t = torch.rand((), generator=g).item()
            w = (1 - t) ** 2 * fa + 2 * t * (1 - t) * bend + t ** 2 * fb
            xb = x[idx].contiguous(memory_format=fmt)
            out = call({**in_layout(_unflat(w, a), fmt), **buffers}, xb)
            loss = F.cross_entropy(out, y[idx]) + 0.5 * weight_decay * w.dot(w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {k: v.detach().clone() for k, v in _unflat(bend.detach(), a).items()}


@torch.no_grad()
def recompute_bn(model, weights: dict, x, batch_size: int) -> dict:
    """Fresh BatchNorm buffers for `weights`: exact averages over the whole training set.

    Each batch enters with momentum b/(seen+b), so the running mean is the size-weighted
    average of batch means (Garipov's update_bn).
    """
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    if not has_batchnorm(model):
        return buffers
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for k, v in buffers.items():
        if k.endswith("running_mean") or k.endswith("num_batches_tracked"):
            v.zero_()
        elif k.endswith("running_var"):
            v.fill_(1.0)
    model.train()
    fmt = fast_layout(model, x.device)
    weights = in_layout(weights, fmt)
    call, seen = caller(model), 0
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].contiguous(memory_format=fmt)
            if len(xb) == 1:
                continue
            for m in bns:
                m.momentum = len(xb) / (seen + len(xb))
            call({**weights, **buffers}, xb)
            seen += len(xb)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
    return buffers


@torch.no_grad()
def error_and_loss(model, weights: dict, buffers: dict, x, y, batch_size: int):
    """(training error in percent, mean cross-entropy) in eval mode, BatchNorm folded."""
    model.eval()
    folded = fold_batchnorm(model)
    names = folded_names(model, folded)
    state = {names[k]: v for k, v in {**weights, **buffers}.items()}
    fmt = fast_layout(model, x.device)
    state = in_layout(state, fmt)
    call, wrong, loss = caller(folded), 0.0, 0.0
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size].contiguous(memory_format=fmt)
        out = call(state, xb)
        wrong += (out.argmax(1) != y[i:i + batch_size]).sum().item()
        loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
    return 100.0 * wrong / len(y), loss / len(y)


def path_profile(model, point_at, ts, x, y, batch_size: int = 1000) -> list[dict]:
    """Error and loss along a path; `point_at(t)` gives the weights at t."""
    rows = []
    for t in ts:
        w = point_at(t)
        buffers = recompute_bn(model, w, x, batch_size)
        err, loss = error_and_loss(model, w, buffers, x, y, batch_size)
        rows.append({"t": t, "train_error": err, "train_loss": loss})
    return rows


def mc_from_errors(errors: list[float]) -> tuple[float, int]:
    """mc = (E(0)+E(1))/2 − E(t*), t* = argmax_t |(E(0)+E(1))/2 − E(t)|; returns (mc, index)."""
    if any(not math.isfinite(e) for e in errors):
        return math.nan, -1
    mid = (errors[0] + errors[-1]) / 2
    gaps = [mid - e for e in errors]
    i = max(range(len(gaps)), key=lambda j: abs(gaps[j]))
    return gaps[i], i


def check_endpoints(profile: list[dict], endpoint_errors: tuple[float, float], tol: float):
    """The curve's t=0 and t=1 must reproduce the endpoint models' training error."""
    for row, ref in zip((profile[0], profile[-1]), endpoint_errors):
        if abs(row["train_error"] - ref) > tol:
            raise CurveError(f"curve at t={row['t']:g} has training error "
                             f"{row['train_error']:.3f}% but the endpoint model has {ref:.3f}% "
                             f"(tolerance metrics.curve.endpoint_tol={tol:g})")


def connect(model, state_a: dict, state_b: dict, x, y, *, epochs: int, lr: float,
            momentum: float, batch_size: int, weight_decay: float, points: int, seed: int,
            endpoint_errors: tuple[float, float], endpoint_tol: float) -> dict:
    """Fit the Bezier curve between two models and measure mc and the linear barrier."""
    a, b = params_of(state_a, model), params_of(state_b, model)
    bend = fit_bend(model, a, b, x, y, epochs=epochs, lr=lr, momentum=momentum,
                    batch_size=batch_size, weight_decay=weight_decay, seed=seed)
    ts = [i / (points - 1) for i in range(points)]
    curve = path_profile(model, lambda t: bezier(t, a, bend, b), ts, x, y)
    check_endpoints(curve, endpoint_errors, endpoint_tol)
    # The line meets the curve at t=0 and t=1 (the same weights): measure only its interior.
    inner = path_profile(model, lambda t: linear(t, a, b), ts[1:-1], x, y)
    line = [curve[0], *inner, curve[-1]]
    mc, i = mc_from_errors([r["train_error"] for r in curve])
    mc_lin, _ = mc_from_errors([r["train_error"] for r in line])
    return {"mc": mc, "t_star": ts[i] if i >= 0 else math.nan, "mc_linear": mc_lin,
            "curve": curve, "line": line}
