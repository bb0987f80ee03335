"""Hessian products of the cross-entropy, hand-derived for the project's own layer types.

Power iteration and Hutchinson take hundreds of products with one fixed Hessian, so what
does not depend on the direction is computed once per sample and kept: the activations,
BatchNorm folded into each convolution (weight aW, bias d per channel), ReLU masks,
max-pool indices, and the backprop adjoint g_l at every layer's output. Two products:

vᵀHv (`quad`, for Hutchinson), from one forward-mode pass. Along θ + εv the logits o(ε)
give vᵀHv = d²L/dε² = o'ᵀ ∇²CE o' + ∇CE · o''. o' is a forward tangent (each layer maps its
input tangent x' to its output's). o'' is linear in each layer's own second-order term
S_l, carried to the logits by the rest of the network's Jacobian: S = 2 conv(x', V) for a
convolution, 2 a'c' for BatchNorm's scale, 2 x'Vᵀ for a linear layer; ReLU, max-pool,
pooling and sums are linear or have a zero second derivative. So ∇CE · o'' = Σ_l ⟨g_l, S_l⟩,
and a convolution layer costs three convolutions of its size per direction (⟨g, conv(x',
V)⟩ = ⟨V, corr(x', g)⟩ is one weight gradient) and one activation-sized add, where a
double backward costs six convolutions and its bookkeeping. B directions go through each
layer together: their kernels stacked as the output channels of one convolution over the
shared activations, their tangents as the input channels of one weight gradient.

H v (`hvp`, for the power iteration), by Pearlmutter's R-operator: the forward tangent,
then the tangent of the backward pass against the kept adjoints (`rback`): the same six
convolutions as a double backward, without autograd's graph and bookkeeping.

Rules cover Conv2d (zeros padding, groups 1) followed by an eval-mode BatchNorm2d or with
its own bias, Linear, ReLU, MaxPool2d, AdaptiveAvgPool2d(1), Flatten and the ResNet basic
block; so cnn, mlp, resnet18 and `nn.Sequential`s of these. `compile_model` returns None
for anything else, and hessian.HVP then uses autograd's double backward. Both products
equal autograd's up to floating-point reassociation (tests/test_second_order.py, and
against exact Hessians). Speed: benchmarks/bench_speed.py.

The rules of each layer are in layer_rules.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...training.models import MLP, BasicBlock, ResNet18, SmallCNN
from .layer_rules import (
    ConvBN,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool,
    ReLU,
    Residual,
    per_dir,
    run_jet,
    run_primal,
    run_rback,
    with_params,
)

# -- from modules to ops -----------------------------------------------------------------

class _Unsupported(Exception):
    pass


def _seq(mods: list) -> list:
    """Ops of modules applied one after another."""
    ops, i = [], 0
    while i < len(mods):
        m = mods[i]
        bn = mods[i + 1] if i + 1 < len(mods) and type(mods[i + 1]) is nn.BatchNorm2d else None
        if type(m) is nn.Conv2d:
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise _Unsupported(m)
            if bn is not None and (m.bias is not None or not bn.affine
                                   or bn.running_mean is None):
                raise _Unsupported(bn)
            ops.append(ConvBN(m, bn))
            i += 1 if bn is None else 2
            continue
        if type(m) is nn.Linear:
            ops.append(Linear(m))
        elif type(m) is nn.ReLU:
            ops.append(ReLU())
        elif type(m) is nn.MaxPool2d:
            ops.append(MaxPool(m))
        elif type(m) is nn.AdaptiveAvgPool2d and m.output_size in (1, (1, 1)):
            ops.append(GlobalAvgPool())
        elif type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            ops.append(Flatten())
        elif type(m) is nn.Sequential:
            ops += _seq(list(m))
        elif type(m) is BasicBlock:
            ops += [Residual(_seq([m.conv1, m.bn1, nn.ReLU(), m.conv2, m.bn2]),
                             _seq(list(m.shortcut))), ReLU()]
        elif type(m) is not nn.Identity:
            raise _Unsupported(m)
        i += 1
    return ops


def compile_model(model: nn.Module) -> list | None:
    """The model as a chain of ops, or None when some part of it is not covered here.
    The models' forward is written out: features, global average pooling, head."""
    gap = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    try:
        if type(model) is SmallCNN:
            ops = _seq([model.features, *gap, model.head])
        elif type(model) is ResNet18:
            ops = _seq([model.stem, model.layers, *gap, model.head])
        elif type(model) is MLP:
            ops = _seq(list(model.net))
        elif type(model) is nn.Sequential:
            ops = _seq(list(model))
        else:
            return None
    except _Unsupported:
        return None
    # Each parameter in exactly one op: a layer used twice (tied weights) has a Hessian
    # these per-layer rules do not describe.
    mine = [id(p) for op in ops for p in op.params]
    if sorted(mine) != sorted(id(p) for p in model.parameters()):
        return None
    return ops


# -- the products ------------------------------------------------------------------------

class SecondOrder:
    """vᵀHv (B directions at once) and H v of the mean cross-entropy of `model` (eval mode)
    on (x, y).

    Samples above `chunk` points are split and each chunk weighted by its size; with one
    chunk the primal and adjoint passes are computed once and kept, with several they are
    recomputed per call to bound memory (as autograd's path recomputes its graph).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1000):
        if model.training:
            raise ValueError("Hessian: the model must be in eval mode (BatchNorm running stats)")
        self.ops = compile_model(model)
        if self.ops is None:
            raise ValueError(f"no second-order rules for {type(model).__name__}")
        self.n = len(y)
        # op parameter order -> model parameter order
        params = list(model.parameters())
        where = {id(p): i for i, p in enumerate(params)}
        self.order = [where[id(p)] for op in self.ops for p in op.params]
        if sorted(self.order) != list(range(len(params))):
            raise ValueError("second-order ops do not cover every parameter of the model")
        self.chunks = [(x[i:i + chunk], y[i:i + chunk]) for i in range(0, self.n, chunk)]
        self._kept = self._primal(*self.chunks[0]) if len(self.chunks) == 1 else None
        # The ops must compute the module's own function (a changed forward() is caught).
        with torch.no_grad():
            ref = model(self.chunks[0][0])
        got = (self._kept or self._primal(*self.chunks[0]))[0]
        if not torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item()):
            raise RuntimeError(f"second-order ops disagree with {type(model).__name__}.forward: "
                               "update metrics/second_order.py and layer_rules.py")

    def _primal(self, x, y):
        """Logits and softmax p [N, K]; every op caches its part, and its adjoint."""
        with torch.enable_grad():
            logits = run_primal(self.ops, x.contiguous())  # NCHW: the faster layout here
            loss = F.cross_entropy(logits, y, reduction="sum") / self.n
            layers = list(with_params(self.ops))
            for op, g in zip(layers, torch.autograd.grad(loss, [op.y0 for op in layers])):
                op.set_adjoint(g)
        logits = logits.detach()
        return logits, torch.softmax(logits, 1)

    @torch.no_grad()
    def quad(self, probes: list[list[torch.Tensor]]) -> torch.Tensor:
        """[B] vᵀHv, one per probe (a list of tensors shaped like the model's parameters)."""
        B = len(probes)
        V = [torch.stack(t) for t in zip(*probes)]  # [B, *shape] per parameter
        V = [V[i] for i in self.order]
        total = 0.0
        for x, y in self.chunks:
            _, p = self._kept if self._kept is not None else self._primal(x, y)
            o1, s = run_jet(self.ops, None, V, B)
            po1 = p * per_dir(o1, B)  # [B, N, K]
            curv = (po1 * per_dir(o1, B)).sum(2) - po1.sum(2) ** 2  # o'ᵀ (diag p − ppᵀ) o'
            total = total + curv.sum(1) / self.n + 2 * s
        return total

    @torch.no_grad()
    def hvp(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v by the R-operator: the forward tangent, then the backward pass's tangent."""
        V = [v[i].unsqueeze(0) for i in self.order]
        out = None
        for x, y in self.chunks:
            _, p = self._kept if self._kept is not None else self._primal(x, y)
            o1, _ = run_jet(self.ops, None, V, 1, keep=True)
            rg = (p * o1 - p * (p * o1).sum(1, keepdim=True)) / self.n  # R(∇ at the logits)
            _, hv = run_rback(self.ops, rg)
            out = hv if out is None else [a + b for a, b in zip(out, hv)]
        res = [None] * len(out)
        for i, h in zip(self.order, out):
            res[i] = h
        return res
