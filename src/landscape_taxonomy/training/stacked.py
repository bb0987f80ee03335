"""S models of one architecture as one grouped network, so one call does S models' work.

Every layer is rebuilt with its channels stacked model-major and `groups=S`: convolutions
become grouped convolutions, BatchNorm gets S*C channels (its statistics are per channel,
hence per model, and PyTorch updates the running buffers as usual), linear layers become
a batched matmul over S blocks. Inputs are stacked on the channel axis: [b, S*C, H, W],
model s reading channels s*C:(s+1)*C, so each model can see its own minibatch.

The stacked network's loss is the sum of the S models' losses, so each block's gradient,
SGD step and BatchNorm update are those of its own model: training the stack is training
the models one by one, up to floating-point reassociation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class GroupedLinear(nn.Module):
    """S independent linear layers on [b, S*d_in] -> [b, S*d_out]."""

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.s = len(linears)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))  # [S, o, i]
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]))  # [S, o]

    def forward(self, x):
        b = x.shape[0]
        x = x.reshape(b, self.s, -1).transpose(0, 1)  # [S, b, i]
        out = torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))  # [S, b, o]
        return out.transpose(0, 1).reshape(b, -1)


def _stack_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    c = convs[0]
    s = len(convs)
    g = nn.Conv2d(c.in_channels * s, c.out_channels * s, c.kernel_size, c.stride, c.padding,
                  c.dilation, groups=c.groups * s, bias=c.bias is not None,
                  padding_mode=c.padding_mode).to(c.weight)
    with torch.no_grad():
        g.weight.copy_(torch.cat([m.weight for m in convs]))
        if c.bias is not None:
            g.bias.copy_(torch.cat([m.bias for m in convs]))
    return g


def _stack_bn(bns: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = bns[0]
    g = nn.BatchNorm2d(b.num_features * len(bns), b.eps, b.momentum, b.affine,
                       b.track_running_stats).to(b.running_mean)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(g, name).copy_(torch.cat([getattr(m, name) for m in bns]))
        g.num_batches_tracked.copy_(b.num_batches_tracked)
    return g


STATELESS = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Tanh,
             nn.Identity)


def stackable(model: nn.Module) -> bool:
    """Whether every layer of `model` can be stacked (its seeds trained as one network):
    found, not assumed, so a model with other layers (LayerNorm, say) trains one seed at a
    time instead of failing."""
    if isinstance(model, (nn.Conv2d, nn.BatchNorm2d, nn.Linear, *STATELESS)):
        return True
    if list(model.parameters(recurse=False)) or list(model.buffers(recurse=False)):
        return False
    return all(stackable(child) for child in model.children())


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One grouped network computing all of `models` (same architecture) at once."""
    return _stack(models)


def _stack(mods: list[nn.Module]) -> nn.Module:
    m = mods[0]
    if isinstance(m, nn.Conv2d):
        return _stack_conv(mods)
    if isinstance(m, nn.BatchNorm2d):
        return _stack_bn(mods)
    if isinstance(m, nn.Linear):
        return GroupedLinear(mods)
    if isinstance(m, STATELESS):
        return copy.deepcopy(m)
    if list(m.parameters(recurse=False)) or list(m.buffers(recurse=False)):
        raise NotImplementedError(f"cannot stack {type(m).__name__}")
    out = copy.copy(m)  # containers and model classes: same forward, stacked children
    out._modules = {name: _stack([getattr(x, name) for x in mods])
                    for name in m._modules}
    return out


def unstack_state(stacked: nn.Module, template: nn.Module, s: int, n: int) -> dict:
    """Model s's state_dict (keys and shapes of `template`) out of a stack of n, as plain
    contiguous tensors whatever the stack's memory format."""
    full = stacked.state_dict()
    out = {}
    for k, ref in template.state_dict().items():
        v = full[k].detach()
        if ref.dim() == 0:  # num_batches_tracked
            part = v
        elif v.shape[0] == n and v.shape[1:] == ref.shape:  # GroupedLinear [S, ...]
            part = v[s]
        else:  # concatenated on dim 0
            size = ref.shape[0]
            part = v[s * size:(s + 1) * size]
        out[k] = part.clone(memory_format=torch.contiguous_format)
    return out


def stack_inputs(xs: torch.Tensor) -> torch.Tensor:
    """[S, b, C, ...] per-model batches -> [b, S*C, ...] for the stacked network."""
    s, b = xs.shape[:2]
    return xs.transpose(0, 1).reshape(b, s * xs.shape[2], *xs.shape[3:])


def split_outputs(out: torch.Tensor, s: int) -> torch.Tensor:
    """[b, S*K] -> [S, b, K]."""
    return out.reshape(out.shape[0], s, -1).transpose(0, 1)
