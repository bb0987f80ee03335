"""Per-layer rules for second_order.py: each layer of the project's models as an op.

primal(x): the layer's output, caching (detached) what a direction does not change.
jet(x', v, B, keep): the output tangent for B directions at once, and ⟨g, S⟩/2 per
  direction ([B], or None): the layer's adjoint g against its own second-order term S.
  With keep (one direction, for H v), what rback needs is kept instead.
rback(Rg): the R-operator's backward step: R(adjoint of the input), given that of the
  output, and this layer's slice of H v.
Layers with parameters keep their output `y0` until `set_adjoint(g)` gives its adjoint.

Directions are batched probe-major: a tangent activation is [B*N, ...], rows b*N:(b+1)*N
belonging to direction b; a parameter's tangent is [B, *param.shape].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def per_dir(t: torch.Tensor, B: int) -> torch.Tensor:
    """[B*N, ...] -> a [B, N, ...] view."""
    return t.view(B, t.shape[0] // B, *t.shape[1:])


def _tracked(t):
    """t, recorded by autograd even when no parameter requires grad (its adjoint is needed)."""
    return t if t.requires_grad else t.requires_grad_()


def _add(a, b):
    return b if a is None else a if b is None else a + b


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
        per_dir(y1, B).add_(t)
        if keep:
            return y1, None
        # corr(x'_b, g) for every direction in one weight gradient: the directions' tangents
        # stacked as input channels, [N, B*C_in, H, W] -> [C_out, B*C_in, kh, kw]
        xc = per_dir(x1, B).transpose(0, 1).reshape(n, -1, *x1.shape[2:])
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
        s = (torch.einsum("nk,bnf->bkf", self.g, per_dir(x1, B)) * V).sum((1, 2))
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
        return (None if x1 is None else per_dir(x1, B).mul_(self.m).view_as(x1)), None

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

    def jet(self, x1, v, B, keep=False):
        if x1 is None:
            return None, None
        # the tangent at the primal's max positions, per channel
        n, c, h, w = self.idx.shape
        idx = self.idx.reshape(1, n, c, h * w).expand(B, -1, -1, -1)
        return x1.reshape(B, n, c, -1).gather(3, idx).view(B * n, c, h, w), None

    def rback(self, rg):
        # back to the max positions; overlapping windows add up
        n, c = self.shape[:2]
        out = rg.new_zeros(n, c, self.shape[2] * self.shape[3])
        return out.scatter_add_(2, self.idx.flatten(2), rg.flatten(2)).view(self.shape), []


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
        return run_primal(self.branch, x) + run_primal(self.shortcut, x)

    def jet(self, x1, v, B, keep=False):
        a, sa = run_jet(self.branch, x1, v[:self.split], B, keep)
        b, sb = run_jet(self.shortcut, x1, v[self.split:], B, keep)
        return _add(a, b), _add(sa, sb)

    def rback(self, rg):
        ra, ha = run_rback(self.branch, rg)
        rb, hb = run_rback(self.shortcut, rg)
        return _add(ra, rb), ha + hb


def run_primal(ops, x):
    for op in ops:
        x = op.primal(x)
    return x


def run_jet(ops, x1, v, B, keep=False):
    i, s = 0, None
    for op in ops:
        k = len(op.params)
        x1, si = op.jet(x1, v[i:i + k], B, keep)
        s, i = _add(s, si), i + k
    return x1, s


def run_rback(ops, rg):
    hv = []
    for op in reversed(ops):
        if rg is None:  # below the first layer with parameters
            break
        rg, h = op.rback(rg)
        hv = h + hv
    return rg, hv


def with_params(ops):
    """The layers that have parameters, nested ones included, in order."""
    for op in ops:
        if isinstance(op, Residual):
            yield from with_params(op.branch + op.shortcut)
        elif op.params:
            yield op
