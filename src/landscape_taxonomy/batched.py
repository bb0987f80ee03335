"""Train every seed of a cell at once: parameters stacked [S, ...] and one vmapped step.

Small models spend most of a step in per-call overhead, so S models in one call cost little
more than one. The result equals `train.train_model` run seed by seed (same init, same
batch order per seed, same SGD arithmetic elementwise) up to floating-point reassociation.

BatchNorm: vmap cannot update running statistics in place, so during the vmapped forward
BatchNorm normalizes with batch statistics without tracking, a pre-hook hands each layer's
batch mean and unbiased variance out as extra outputs, and the running buffers are then
updated outside vmap with the module's own momentum rule.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from .models import build_model
from .train import Recipe, TrainResult


def _bn_modules(model):
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def train_stacked(*, arch: str, width: int, input_shape, n_classes: int, x: torch.Tensor,
                  y: torch.Tensor, recipe: Recipe, seeds: list[int],
                  device: torch.device) -> list[TrainResult]:
    x, y = x.to(device), y.to(device)
    models = [build_model(arch, width, input_shape, n_classes, seed=s).to(device, x.dtype)
              for s in seeds]
    params, buffers = stack_module_state(models)  # each [S, ...]
    base = copy.deepcopy(models[0]).to("meta")
    bns = _bn_modules(base)
    for _, m in bns:
        m.track_running_stats = False  # vmapped forward: batch stats, no in-place update

    stats: list = []

    def grab(module, inputs):
        z = inputs[0]
        dims = [0] + list(range(2, z.dim()))
        stats.append((z.mean(dims), z.var(dims, unbiased=True)))

    hooks = [m.register_forward_pre_hook(grab) for _, m in bns]

    def forward(p, b, xb):
        stats.clear()
        out = functional_call(base, (p, b), (xb,))
        return out, tuple(s for pair in stats for s in pair)

    step_fn = vmap(forward, in_dims=(0, 0, 0))
    plist = list(params.values())
    opt = torch.optim.SGD(plist, lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    S, n, bs = len(seeds), len(y), recipe.batch_size
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    results = [TrainResult(state={}) for _ in seeds]
    best = [math.inf] * S
    prev, calm, active = [None] * S, [0] * S, [True] * S
    bn_names = [name for name, _ in bns]

    for epoch in range(recipe.max_epochs):
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [S, n]
        loss_sum = torch.zeros(S, device=device)
        correct = torch.zeros(S, device=device)
        seen = 0
        for i in range(0, n, bs):
            idx = perms[:, i:i + bs]  # [S, b]
            if bns and idx.shape[1] == 1:
                continue
            xb, yb = x[idx], y[idx]  # [S, b, ...], [S, b]
            out, bstats = step_fn(params, buffers, xb)  # out [S, b, K]
            losses = F.cross_entropy(out.transpose(1, 2), yb, reduction="none").mean(1)  # [S]
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            _update_running(buffers, bn_names, bstats, dict(bns))
            loss_sum += losses.detach() * idx.shape[1]
            correct += (out.detach().argmax(2) == yb).sum(1)
            seen += idx.shape[1]
        epoch_loss = (loss_sum / seen).tolist()
        epoch_acc = (correct / seen).tolist()
        for s in range(S):
            if not active[s]:
                continue
            r = results[s]
            r.epochs = epoch + 1
            r.log.append({"epoch": epoch + 1, "lr": recipe.lr_at(epoch),
                          "train_loss": epoch_loss[s], "train_acc": epoch_acc[s]})
            if not math.isfinite(epoch_loss[s]):
                r.diverged, active[s] = True, False
                r.state = _state(params, buffers, s)
                continue
            if epoch_loss[s] < best[s]:
                best[s], r.best_epoch = epoch_loss[s], epoch + 1
                r.state = _state(params, buffers, s)
            calm[s] = calm[s] + 1 if prev[s] is not None and abs(
                epoch_loss[s] - prev[s]) < recipe.stop_tol else 0
            prev[s] = epoch_loss[s]
            if calm[s] >= recipe.stop_patience:
                r.stopped_early, r.best_epoch, active[s] = True, epoch + 1, False
                r.state = _state(params, buffers, s)
        if not any(active):
            break
    for h in hooks:
        h.remove()
    for s, r in enumerate(results):
        if not r.state:
            r.state = _state(params, buffers, s)
        r.state = {k: v.cpu() for k, v in r.state.items()}
    return results


@torch.no_grad()
def _update_running(buffers, bn_names, bstats, modules):
    """running = (1 - m) running + m batch_stat, per layer and model (stats are [S, C])."""
    for j, name in enumerate(bn_names):
        mod = modules[name]
        mean, var = bstats[2 * j], bstats[2 * j + 1]
        buffers[f"{name}.num_batches_tracked"] += 1
        m = mod.momentum if mod.momentum is not None else 1.0 / buffers[
            f"{name}.num_batches_tracked"][0].item()
        buffers[f"{name}.running_mean"].mul_(1 - m).add_(m * mean)
        buffers[f"{name}.running_var"].mul_(1 - m).add_(m * var)


def _state(params, buffers, s: int) -> dict:
    return {k: v[s].detach().clone() for k, v in {**params, **buffers}.items()}
