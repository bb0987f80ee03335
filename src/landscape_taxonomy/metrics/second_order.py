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

Directions are batched probe-major: a tangent activation is [B*N, ...], rows b*N:(b+1)*N
belonging to direction b; a parameter's tangent is [B, *param.shape].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import MLP, BasicBlock, ResNet18, SmallCNN


def _per_dir(t: torch.Tensor, B: int) -> torch.Tensor:
    """[B*N, ...] -> a [B, N, ...] view."""
    return t.view(B, t.shape[0] // B, *t.shape[1:])


def _tracked(t):
    """t, recorded by autograd even when no parameter requires grad (its adjoint is needed)."""
    return t if t.requires_grad else t.requires_grad_()


def _add(a, b):
    return b if a is None else a if b is None else a + b


# -- layers ------------------------------------------------------------------------------
# primal(x): the output, caching (detached) what the direction does not change;
# jet(x', v, B, keep): the output tangent and ⟨g, S⟩/2 per direction ([B], or None); with
#   keep (one direction, for H v) what rback needs is kept instead of computing ⟨g, S⟩;
# rback(Rg): R(adjoint of the input), given that of the output, and this layer's H v.
# Layers with parameters keep their output `y0` until `g`, its adjoint, is set.

class ConvBN:
    """conv, then eval BatchNorm, as one convolution with weight aW and bias d per output
    channel (a = γ/√(σ²+ε), d = β − μa); or a conv with its own bias (a = 1, d = bias)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None):
        self.conv, self.bn = conv, bn
        own = [conv.bias] if conv.bias is not None else []
        self.params = [conv.weight, *([bn.weight, bn.bias] if bn is not None else own)]
        self.args = (list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0],
                     1)

    def _conv(self, x, w, b=None):
        return F.conv2d(x, w, b, self.conv.stride, self.conv.padding, self.conv.dilation)

    def _corr(self, x, g):
        """The weight gradient Σ_n x ⋆ g: [C_out, x's channels, kh, kw]."""
        w = self.conv.weight  # for its shape: C_in repeated when x stacks several tangents
        w = w if x.shape[1] == w.shape[1] else w.repeat(1, x.shape[1] // w.shape[1], 1, 1)
        return torch.ops.aten.convolution_backward(g, x, w, None, *self.args,
                                                   [False, True, False])[1]

    def primal(self, x):
        self.x0, W = x.detach(), self.conv.weight
        if self.bn is None:
            self.y0 = self._conv(x, W, self.conv.bias)
            self.wa = W.detach()
        else:
            bn = self.bn
            self.r, self.mu = torch.rsqrt(bn.running_var + bn.eps), bn.running_mean  # [C]
            a = bn.weight * self.r
            self.y0 = self._conv(x, W * a[:, None, None, None], bn.bias - self.mu * a)
            self.a, self.wa = a.detach(), (W * a[:, None, None, None]).detach()
        return _tracked(self.y0)

    def set_adjoint(self, g):
        self.g, self.y0 = g, None
        if self.bn is not None:
            self.g0 = self._corr(self.x0, g)  # corr(x0, g), for the a'-terms below

    def jet(self, x1, v, B, keep=False):
        # y' = a conv(x', W) + a conv(x0, V) + a' conv(x0, W) + d' = conv(x', aW) + conv(x0, K)
        # + d' with K = aV + a'W; and S/2 = a conv(x', V) + a' conv(x', W) + a' conv(x0, V), so
        # ⟨g, S/2⟩ = ⟨K, corr(x', g)⟩ + ⟨a'V, corr(x0, g)⟩. No activation-sized arithmetic
        # but one add: everything else acts on kernels.
        W, V = self.conv.weight, v[0]  # V: [B, C_out, C_in, kh, kw]
        n, s = self.x0.shape[0], None
        if self.bn is None:
            K, d1 = V, (v[1] if len(v) > 1 else None)
        else:
            a1 = v[1] * self.r  # [B, C]: the tangent of a
            K = V * self.a[:, None, None, None] + a1[:, :, None, None, None] * W
            d1 = v[2] - self.mu * a1
            s = (a1[:, :, None, None, None] * V * self.g0).sum((1, 2, 3, 4))
        # every direction's conv(x0, K_b) + d'_b in one call: the B kernels stacked as
        # output channels over the shared x0
        t = self._conv(self.x0, K.flatten(0, 1), None if d1 is None else d1.flatten())
        t = t.unflatten(1, (B, -1)).transpose(0, 1)  # [B, N, C, H, W] view
        if keep:  # for rback: one direction
            self.x1, self.K, self.v = x1, K[0], [p[0] for p in v]
        if x1 is None:  # the input is the data: no tangent
            return t.reshape(B * n, *t.shape[2:]), s
        y1 = self._conv(x1, self.wa)
        _per_dir(y1, B).add_(t)
        if keep:
            return y1, None
        # corr(x'_b, g) for every direction in one weight gradient: the directions' tangents
        # stacked as input channels, [N, B*C_in, H, W] -> [C_out, B*C_in, kh, kw]
        xc = _per_dir(x1, B).transpose(0, 1).reshape(n, -1, *x1.shape[2:])
        G = self._corr(xc, self.g).unflatten(1, (B, -1)).transpose(0, 1)  # [B, *W.shape]
        s = _add(s, (G * K).sum((1, 2, 3, 4)))
        return y1, s

    def rback(self, rg):
        """R-operator backward, one direction: R(adjoint of the input) and Hv of W, γ, β."""
        x1, K, v, W = self.x1, self.K, self.v, self.conv.weight
        cb = torch.ops.aten.convolution_backward
        # R g_x = convT(Rg, aW) + convT(g, K);  R corr(x, g) = corr(x0, Rg) + corr(x', g)
        rgx, rc, _ = cb(rg, self.x0, self.wa, None, *self.args, [x1 is not None, True, False])
        if x1 is not None:
            gx2, rc2, _ = cb(self.g, x1, K, None, *self.args, [True, True, False])
            rgx, rc = rgx + gx2, rc + rc2
        hb = rg.sum((0, 2, 3))
        if self.bn is None:
            return rgx, [rc] + ([hb] if len(v) > 1 else [])
        # g_W = a corr(x, g);  g_γ = r (⟨W, corr(x, g)⟩ − μ Σ g) per channel;  g_β = Σ g
        a1 = v[1] * self.r
        hw = rc * self.a[:, None, None, None] + self.g0 * a1[:, None, None, None]
        hg = self.r * ((rc * W).sum((1, 2, 3)) + (self.g0 * v[0]).sum((1, 2, 3)) - self.mu * hb)
        return rgx, [hw, hg, hb]


class Linear:
    def __init__(self, lin: nn.Linear):
        self.lin = lin
        self.params = [lin.weight] + ([lin.bias] if lin.bias is not None else [])

    def primal(self, x):
        self.x0 = x.detach()
        self.y0 = self.lin(x)
        return _tracked(self.y0)

    def set_adjoint(self, g):
        self.g, self.y0 = g, None

    def jet(self, x1, v, B, keep=False):
        W, V = self.lin.weight, v[0]  # V: [B, K, F]
        if keep:
            self.x1, self.v = x1, [p[0] for p in v]
        t = torch.einsum("nf,bkf->bnk", self.x0, V)  # x0 Vᵀ for every direction
        if len(v) > 1:
            t = t + v[1][:, None, :]
        t = t.reshape(-1, W.shape[0])
        if x1 is None:
            return t, None
        if keep:
            return x1 @ W.T + t, None
        # S/2 = x' Vᵀ:  ⟨g, x'_b V_bᵀ⟩ = ⟨V_b, gᵀ x'_b⟩
        s = (torch.einsum("nk,bnf->bkf", self.g, _per_dir(x1, B)) * V).sum((1, 2))
        return x1 @ W.T + t, s

    def rback(self, rg):
        # g_x = g W, g_W = gᵀ x:  R g_x = Rg W + g V,  Hv_W = Rgᵀ x0 + gᵀ x'
        x1, v = self.x1, self.v
        hw = rg.T @ self.x0
        if x1 is None:
            return None, [hw] + ([rg.sum(0)] if len(v) > 1 else [])
        hw = hw + self.g.T @ x1
        return rg @ self.lin.weight + self.g @ v[0], [hw] + ([rg.sum(0)] if len(v) > 1 else [])


class ReLU:
    params = []

    def primal(self, x):
        self.m = (x > 0).to(x.dtype).detach()
        return x.clamp_min(0)

    def jet(self, x1, v, B, keep=False):
        # in place: no layer keeps its output tangent
        return (None if x1 is None else _per_dir(x1, B).mul_(self.m).view_as(x1)), None

    def rback(self, rg):
        return rg * self.m, []


class MaxPool:
    params = []

    def __init__(self, pool: nn.MaxPool2d):
        self.pool = pool

    def primal(self, x):
        p = self.pool
        y, self.idx = F.max_pool2d(x, p.kernel_size, p.stride, p.padding, p.dilation,
                                   p.ceil_mode, return_indices=True)
        self.shape = x.shape
        return y

    def rback(self, rg):
        n, c = self.shape[:2]
        out = rg.new_zeros(n, c, self.shape[2] * self.shape[3])
        return out.scatter_add_(2, self.idx.flatten(2), rg.flatten(2)).view(self.shape), []

    def jet(self, x1, v, B, keep=False):
        if x1 is None:
            return None, None
        # the tangent at the primal's max positions, per channel
        n, c, h, w = self.idx.shape
        idx = self.idx.reshape(1, n, c, h * w).expand(B, -1, -1, -1)
        return x1.reshape(B, n, c, -1).gather(3, idx).view(B * n, c, h, w), None


class GlobalAvgPool:
    """adaptive_avg_pool2d(x, 1): [N, C, H, W] -> [N, C, 1, 1]."""
    params = []

    def primal(self, x):
        self.shape = x.shape
        return x.mean((2, 3), keepdim=True)

    def jet(self, x1, v, B, keep=False):
        return (None if x1 is None else x1.mean((2, 3), keepdim=True)), None

    def rback(self, rg):
        return (rg / (self.shape[2] * self.shape[3])).expand(self.shape), []


class Flatten:
    params = []

    def primal(self, x):
        self.shape = x.shape
        return x.flatten(1)

    def jet(self, x1, v, B, keep=False):
        return (None if x1 is None else x1.flatten(1)), None

    def rback(self, rg):
        return rg.reshape(self.shape), []


class Residual:
    """branch(x) + shortcut(x); the ReLU after the sum is an op of its own."""

    def __init__(self, branch: list, shortcut: list):
        self.branch, self.shortcut = branch, shortcut
        self.params = [p for op in branch + shortcut for p in op.params]
        self.split = sum(len(op.params) for op in branch)

    def primal(self, x):
        return _primal(self.branch, x) + _primal(self.shortcut, x)

    def jet(self, x1, v, B, keep=False):
        a, sa = _jet(self.branch, x1, v[:self.split], B, keep)
        b, sb = _jet(self.shortcut, x1, v[self.split:], B, keep)
        return _add(a, b), _add(sa, sb)

    def rback(self, rg):
        ra, ha = _rback(self.branch, rg)
        rb, hb = _rback(self.shortcut, rg)
        return _add(ra, rb), ha + hb


def _primal(ops, x):
    for op in ops:
        x = op.primal(x)
    return x


def _jet(ops, x1, v, B, keep=False):
    i, s = 0, None
    for op in ops:
        k = len(op.params)
        x1, si = op.jet(x1, v[i:i + k], B, keep)
        s, i = _add(s, si), i + k
    return x1, s


def _rback(ops, rg):
    hv = []
    for op in reversed(ops):
        if rg is None:  # below the first layer with parameters
            break
        rg, h = op.rback(rg)
        hv = h + hv
    return rg, hv


def _with_params(ops):
    """The layers that have parameters, nested ones included, in order."""
    for op in ops:
        if isinstance(op, Residual):
            yield from _with_params(op.branch + op.shortcut)
        elif op.params:
            yield op


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
            return _seq([model.features, *gap, model.head])
        if type(model) is ResNet18:
            return _seq([model.stem, model.layers, *gap, model.head])
        if type(model) is MLP:
            return _seq(list(model.net))
        if type(model) is nn.Sequential:
            return _seq(list(model))
    except _Unsupported:
        pass
    return None


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
                               "update metrics/second_order.py")

    def _primal(self, x, y):
        """Logits and softmax p [N, K]; every op caches its part, and its adjoint."""
        with torch.enable_grad():
            logits = _primal(self.ops, x.contiguous())  # NCHW: the faster layout here
            loss = F.cross_entropy(logits, y, reduction="sum") / self.n
            layers = list(_with_params(self.ops))
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
            o1, s = _jet(self.ops, None, V, B)
            po1 = p * _per_dir(o1, B)  # [B, N, K]
            curv = (po1 * _per_dir(o1, B)).sum(2) - po1.sum(2) ** 2  # o'ᵀ (diag p − ppᵀ) o'
            total = total + curv.sum(1) / self.n + 2 * s
        return total

    @torch.no_grad()
    def hvp(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v by the R-operator: the forward tangent, then the backward pass's tangent."""
        V = [v[i].unsqueeze(0) for i in self.order]
        out = None
        for x, y in self.chunks:
            _, p = self._kept if self._kept is not None else self._primal(x, y)
            o1, _ = _jet(self.ops, None, V, 1, keep=True)
            rg = (p * o1 - p * (p * o1).sum(1, keepdim=True)) / self.n  # R(∇ at the logits)
            _, hv = _rback(self.ops, rg)
            out = hv if out is None else [a + b for a, b in zip(out, hv)]
        res = [None] * len(out)
        for i, h in zip(self.order, out):
            res[i] = h
        return res
