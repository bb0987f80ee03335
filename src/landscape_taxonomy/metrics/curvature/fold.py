"""Eval-mode BatchNorm folded into the convolution before it, keeping the parameters.

In eval mode BatchNorm is a per-channel affine map with fixed statistics, so

    bn(conv(x, W)) = conv(x, W * s) + (β - μ s),   s = γ / sqrt(σ² + ε)  [C_out]

is the same function of the same parameters (W, γ, β). Computing it the right-hand way
scales the small weight tensor instead of the activations: the forward pass loses two
activation-sized passes per layer, and a Hessian-vector product (double backward) loses
BatchNorm's generic double-backward formula, a quarter of a width-16 CNN's product on CPU
(benchmarks/bench_speed.py). Gradients and Hessians are those of the unfolded model up to
floating-point reassociation (tests/test_fold.py, tests/test_hessian.py).

Only pairs that are certainly conv -> bn in the data flow are folded: neighbours in an
`nn.Sequential`, and pairs a module lists in a `conv_bn_pairs` attribute (the ResNet
block does). Anything else is left as it is, which is always correct, just slower.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    """conv followed by eval-mode bn, computed as one convolution with folded weights."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn = conv, bn  # the same modules: parameters are shared, not copied

    def forward(self, x):
        c, bn = self.conv, self.bn
        if bn.training or c.padding_mode != "zeros":
            return bn(c(x))
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # [C_out]
        shift = bn.bias - bn.running_mean * scale
        if c.bias is not None:
            shift = shift + c.bias * scale
        return F.conv2d(x, c.weight * scale[:, None, None, None], shift, c.stride, c.padding,
                        c.dilation, c.groups)


def _foldable(conv, bn) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.affine
            and bn.track_running_stats and bn.running_mean is not None)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A view of `model` (same parameter objects, same order) with conv+BN pairs folded.

    The returned module must be used in eval mode; in train mode a folded pair falls
    back to conv then bn. The original model is not modified.
    """
    out = copy.copy(model)  # shallow: shares parameters and buffers
    mods = dict(model._modules)
    pairs = list(getattr(model, "conv_bn_pairs", ()))
    if isinstance(model, nn.Sequential):
        names = list(mods)
        pairs += [(a, b) for a, b in zip(names, names[1:])]
    folded = {}
    for conv_name, bn_name in pairs:
        conv, bn = mods.get(conv_name), mods.get(bn_name)
        if conv_name in folded or bn_name in folded or not _foldable(conv, bn):
            continue
        folded[conv_name], folded[bn_name] = ConvBN(conv, bn), nn.Identity()
    out._modules = {k: folded[k] if k in folded else (fold_batchnorm(m) if m is not None else m)
                    for k, m in mods.items()}
    return out


def folded_names(model: nn.Module, folded: nn.Module) -> dict[str, str]:
    """Parameter and buffer names of `model` -> their names in its folded view, so a state
    for `model` can drive the view through `torch.func.functional_call`."""
    where = {id(t): n for n, t in itertools.chain(folded.named_parameters(),
                                                  folded.named_buffers())}
    return {n: where[id(t)] for n, t in itertools.chain(model.named_parameters(),
                                                        model.named_buffers())}
