"""Train every seed of a cell at once, as one grouped network (see stacked.py).

Small models spend most of a step in per-call overhead, so S models in one call cost little
more than one. Each seed keeps what `train.train_model` would give it: its own init, its own
batch order, its own early stop and kept checkpoint (the same `recipe.StopRule`); the result
equals training the seeds one by one up to floating-point reassociation (tests/test_train.py).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .models import build_model, fast_layout, has_batchnorm
from .recipe import Recipe, StopRule, TrainResult, chance_loss, settle_divergence, sgd
from .stacked import split_outputs, stack_inputs, stack_models, unstack_state


def train_stacked(*, arch: str, width: int, input_shape, n_classes: int, x: torch.Tensor,
                  y: torch.Tensor, recipe: Recipe, seeds: list[int],
                  device: torch.device) -> list[TrainResult]:
    x, y = x.to(device), y.to(device)
    models = [build_model(arch, width, input_shape, n_classes, seed=s).to(device, x.dtype)
              for s in seeds]
    net = stack_models(models)
    # On CPU oneDNN's grouped convolutions and max-pooling are much faster channels-last
    # (30% off a width-16 CNN's stacked step, benchmarks/bench_speed.py).
    fmt = fast_layout(models[0], device)
    net = net.to(memory_format=fmt)
    opt = sgd(net.parameters(), recipe)
    S, n, bs = len(seeds), len(y), recipe.batch_size
    skip_single = has_batchnorm(models[0])
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    results = [TrainResult(state={}, path="stacked") for _ in seeds]
    rules = [StopRule(recipe) for _ in seeds]
    active = [True] * S

    def snapshot(s):
        return unstack_state(net, models[0], s, S)

    for epoch in range(recipe.max_epochs):
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [S, n]
        net.train()
        loss_sum = torch.zeros(S, device=device)
        correct = torch.zeros(S, device=device)
        seen = 0
        for i in range(0, recipe.batches_end(n), bs):
            idx = perms[:, i:i + bs]  # [S, b]
            if skip_single and idx.shape[1] == 1:
                continue  # BatchNorm cannot train on one sample (train_model skips it too)
            yb = y[idx]  # [S, b]
            xb = stack_inputs(x[idx])  # [b, S*C, H, W]
            out = split_outputs(net(xb.contiguous(memory_format=fmt)), S)  # [S, b, K]
            losses = F.cross_entropy(out.transpose(1, 2), yb, reduction="none").mean(1)  # [S]
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            loss_sum += losses.detach() * idx.shape[1]
            correct += (out.detach().argmax(2) == yb).sum(1)
            seen += idx.shape[1]
        epoch_loss = (loss_sum / seen).tolist()
        epoch_acc = (correct / seen).tolist()
        for s in range(S):
            if active[s]:
                active[s] = rules[s].end_epoch(results[s], epoch, recipe.lr_at(epoch),
                                               epoch_loss[s], epoch_acc[s],
                                               functools.partial(snapshot, s))
        if not any(active):
            break
    chance = chance_loss(y)
    for s, r in enumerate(results):
        if not r.state:
            r.state = snapshot(s)
        r.state = {k: v.cpu() for k, v in r.state.items()}
        settle_divergence(r, chance)
    return results
