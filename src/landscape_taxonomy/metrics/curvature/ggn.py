"""The Hessian's trace, exactly: the trace of the Gauss-Newton matrix, where the two agree.

For the mean cross-entropy over N points, H = G + (1/N) Σ_i Σ_k r_ik ∇²f_k(x_i), with
G = (1/N) Σ_i J_iᵀ A_i J_i (J_i = ∂f(x_i)/∂θ, A_i = diag(p_i) − p_i p_iᵀ the loss's Hessian
in the logits, r_i = p_i − onehot(y_i)). tr H = tr G when every diagonal entry ∂²f_k/∂θ_j²
is zero, that is when the network is affine in each single parameter, the others held:

- every parameter sits in a Linear or Conv2d layer (output bilinear in weight and input)
  or an eval-mode BatchNorm (affine in γ and β; running statistics, not the batch's,
  which in train mode depend on the weights);
- every nonlinearity is piecewise linear, with second derivative zero as autograd
  differentiates it (ReLU, max-pool), and the rest is linear (average pooling, flatten,
  residual sums);
- no parameter is used twice (a layer applied twice is quadratic in its weights).

The project's mlp, cnn and resnet18 meet all three in eval mode, the Hessian's mode
(`why_not_exact` checks the classes, the mode and the layers; tests/test_ggn.py compares
with dense float64 Hessians, BatchNorm and residual blocks included, and shows a tanh
network, which fails the second condition, giving another number). Elsewhere the
deflated Hutchinson estimate of estimators.py is used.

tr G = (1/N) Σ_i Σ_c ‖J_iᵀ s_ic‖², with s_ic = √p_ic (e_c − p_i), since A_i = Σ_c s_ic s_icᵀ.
For each class c one backward pass from the logits, seeded with s_ic, gives δ_ic, the
gradient at every layer's output, sample by sample; a layer's share of ‖J_iᵀ s_ic‖² is the
squared norm of that sample's gradient of its parameters:

    Linear   ‖δ‖² ‖a‖²,  + ‖δ‖² for the bias                   a: the layer's input [n, F]
    Conv2d   ‖δ Uᵀ‖²_F,  + ‖Σ_pos δ‖² for a bias          U: the input's patches [C k², L]
    BN       ‖Σ_pos δ x̂‖² for γ,  ‖Σ_pos δ‖² for β               x̂: the normalized input

K backward passes over the sample, no more: exact to float rounding, and on the default
grid far cheaper than the hundreds of probes a 1% SE can take.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...training.models import MLP, BasicBlock, ResNet18, SmallCNN

# Models whose forward is known to add only piecewise-linear and linear steps (ReLU,
# max-pool, adaptive average pooling, flatten, residual sums) to their modules' own, and
# every module they may hold; compared by exact type, so a subclass with another forward
# or a swapped-in activation is not taken for one of them.
PIECEWISE_LINEAR = (MLP, SmallCNN, ResNet18)
LAYERS = (nn.Linear, nn.Conv2d, nn.BatchNorm2d)
MODULES = (*PIECEWISE_LINEAR, BasicBlock, *LAYERS, nn.Sequential, nn.ReLU, nn.MaxPool2d,
           nn.Flatten, nn.Identity)
FLOATS_PER_PASS = 1 << 24  # bound on a conv's per-sample gradients held at once (64 MiB)


def why_not_exact(model: nn.Module) -> str | None:
    """None where tr H = tr G holds for `model` as it is now, else why not (one line)."""
    if type(model) not in PIECEWISE_LINEAR:
        return (f"{type(model).__name__} is not one of the models known to be piecewise "
                "linear in their inputs (mlp, cnn, resnet18)")
    if model.training:
        return "the model is in train mode (BatchNorm's batch statistics depend on the weights)"
    named = list(model.named_parameters(remove_duplicate=False))
    if len({id(p) for _, p in named}) != len(named):
        return "a parameter is used twice (tied weights)"
    for name, m in model.named_modules():
        if type(m) not in MODULES:
            return (f"{name}: {type(m).__name__} is not among the piecewise-linear steps and "
                    "layers covered")
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is None:
            return f"{name}: BatchNorm without running statistics normalizes by the batch's"
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
            return f"{name}: grouped or non-zero-padded Conv2d is not covered"
    return None


def hessian_trace(model: nn.Module, x: torch.Tensor, chunk: int = 1000) -> float:
    """tr of the Hessian of the mean cross-entropy over the points x in the parameters,
    exactly (float64 sums), for a model that why_not_exact accepts; it needs no labels, as
    the trace it equals does not. `chunk`: points per forward."""
    reason = why_not_exact(model)
    if reason is not None:
        raise ValueError(f"the Hessian's trace is not the Gauss-Newton trace here: {reason}")
    layers = [m for m in model.modules() if isinstance(m, LAYERS)]
    total = 0.0
    for xs in x.split(chunk):
        total += _chunk(model, layers, xs)
    return total / len(x)


def _chunk(model, layers, xs) -> float:
    seen: dict = {}

    def keep(m, inputs, out):
        if m in seen:
            raise RuntimeError(f"{type(m).__name__} ran twice in one forward")
        seen[m] = (inputs[0].detach(), out)

    hooks = [m.register_forward_hook(keep) for m in layers]
    try:
        with torch.enable_grad():
            logits = model(xs)  # [n, K]
    finally:
        for h in hooks:
            h.remove()
    p = torch.softmax(logits.detach().double(), 1)
    k = p.shape[1]
    eye = torch.eye(k, dtype=p.dtype, device=p.device)
    seeds = (p.sqrt()[:, :, None] * (eye - p[:, None, :])).to(logits.dtype)  # [n, c, K]
    outs = [seen[m][1] for m in layers]
    total = 0.0
    for c in range(k):
        deltas = torch.autograd.grad(logits, outs, seeds[:, c], retain_graph=c < k - 1)
        total += math.fsum(_share(m, seen[m][0], d.detach()) for m, d in zip(layers, deltas))
    return total


def _share(m: nn.Module, a: torch.Tensor, d: torch.Tensor) -> float:
    """Σ over the chunk's samples of ‖∂u/∂θ_layer‖² for one class seed: a is the layer's
    input, d the gradient at its output."""
    if isinstance(m, nn.Linear):
        # a [n, F], d [n, O]: the per-sample weight gradient d aᵀ has norm ‖d‖ ‖a‖
        dd = d.pow(2).sum(1).double()
        out = float((dd * a.pow(2).sum(1).double()).sum())
        return out + (float(dd.sum()) if m.bias is not None else 0.0)
    if isinstance(m, nn.BatchNorm2d):
        if not m.affine:
            return 0.0
        xhat = (a - m.running_mean[:, None, None]) / torch.sqrt(
            m.running_var[:, None, None] + m.eps)
        return (float((d * xhat).sum((2, 3)).double().pow(2).sum())
                + float(d.sum((2, 3)).double().pow(2).sum()))
    # Conv2d: the per-sample weight gradient is D Uᵀ [O, C k²] (D [O, L], U [C k², L])
    n, o = d.shape[:2]
    dm = d.reshape(n, o, -1)  # [n, O, L]
    u = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride)  # [n, C k², L]
    ck, length = u.shape[1:]
    # ‖D Uᵀ‖² directly, or as ⟨DᵀD, UᵀU⟩ over the L positions where that is smaller
    per = min(o * ck, length * length)
    step = max(1, FLOATS_PER_PASS // per)
    out = 0.0
    for s in range(0, n, step):
        ds, us = dm[s:s + step], u[s:s + step]
        if o * ck <= length * length:
            sq = torch.bmm(ds, us.transpose(1, 2)).pow(2).sum()
        else:
            sq = (torch.bmm(ds.transpose(1, 2), ds) * torch.bmm(us.transpose(1, 2), us)).sum()
        out += float(sq.double())
    if m.bias is not None:
        out += float(dm.sum(2).double().pow(2).sum())
    return out
