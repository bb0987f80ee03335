"""Training: the paper's SGD recipe on tensors held on the device, batched by index.

`train_model` trains one model; `train_cell` trains every seed of a grid cell. The kept
checkpoint is the paper's: the early-stopped model, else the one with the lowest training
loss. A loss that turns NaN or infinite ends that model as diverged; the caller goes on.
A model whose kept checkpoint is no better than chance is diverged too (`settle_divergence`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .models import build_model, count_params, fast_layout, has_batchnorm, has_conv


@dataclass(frozen=True)
class Recipe:
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    max_epochs: int = 150
    stop_tol: float = 1e-4
    stop_patience: int = 5
    lr_schedule: str = "constant"  # or "step": x lr_decay_factor from lr_decay_at of the epochs
    lr_decay_at: float = 0.75
    lr_decay_factor: float = 0.1

    def lr_at(self, epoch: int) -> float:
        if self.lr_schedule == "step" and epoch >= int(self.lr_decay_at * self.max_epochs):
            return self.lr * self.lr_decay_factor
        return self.lr


@dataclass
class TrainResult:
    state: dict
    log: list = field(default_factory=list)  # one dict per epoch
    epochs: int = 0
    best_epoch: int = 0
    stopped_early: bool = False
    diverged: bool = False  # its loss went non-finite, or it learned nothing (settle_divergence)


def chance_loss(y: torch.Tensor) -> float:
    """The training loss of the best guess that ignores the input: the label frequencies of
    y, whose cross-entropy is their entropy (ln K for K balanced classes)."""
    counts = torch.bincount(y.detach().flatten().cpu()).double()
    freq = counts[counts > 0] / counts.sum()
    return float(-(freq * freq.log()).sum())


def settle_divergence(r: TrainResult, chance: float) -> None:
    """The one divergence rule, for every training path: a model is diverged if its loss went
    NaN or infinite, or if the checkpoint it keeps has a training loss (that epoch's mean) not
    below `chance_loss`: it did no better than predicting the label frequencies without
    looking at the input, so it has no landscape to measure. That is a loss that exploded but
    stayed finite (lr 10 on digits: epoch losses 2.6 to 16, never below ln 10) as much
    as one that never moved."""
    if r.diverged or not r.best_epoch:
        r.diverged = True
        return
    kept = r.log[r.best_epoch - 1]["train_loss"]
    r.diverged = not kept < chance


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: cuda was asked for but torch sees no CUDA device")
    return torch.device(device)


def sgd(params, recipe: Recipe) -> torch.optim.SGD:
    """The recipe's SGD, as one fused kernel over all tensors where torch has one (CPU and
    CUDA): a third of the for-loop step's time, the same update."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, fused=fused)


def snapshot(model: torch.nn.Module) -> dict:
    """A copy of the state as plain contiguous tensors, whatever the training layout."""
    return {k: v.detach().clone(memory_format=torch.contiguous_format)
            for k, v in model.state_dict().items()}


def train_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe,
                seed: int) -> TrainResult:
    """Train in place on (x [n, ...], y [n]) already on the model's device."""
    fmt = fast_layout(model, x.device)
    model.to(memory_format=fmt)
    opt = sgd(model.parameters(), recipe)
    g = torch.Generator().manual_seed(seed)  # batch order: CPU generator, same on any device
    n, bs = len(y), recipe.batch_size
    skip_single = has_batchnorm(model)  # BatchNorm cannot train on a batch of one
    res = TrainResult(state={})
    best_loss, prev, calm = math.inf, None, 0
    for epoch in range(recipe.max_epochs):
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        perm = torch.randperm(n, generator=g).to(x.device)
        model.train()
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device)
        seen = 0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if skip_single and len(idx) == 1:
                continue
            out = model(x[idx].contiguous(memory_format=fmt))
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.detach().argmax(1) == y[idx]).sum()
            seen += len(idx)
        epoch_loss = (loss_sum / seen).item()  # one sync per epoch
        res.epochs = epoch + 1
        res.log.append({"epoch": epoch + 1, "lr": recipe.lr_at(epoch), "train_loss": epoch_loss,
                        "train_acc": (correct / seen).item()})
        if not math.isfinite(epoch_loss):
            res.diverged = True
            break
        if epoch_loss < best_loss:
            best_loss, res.best_epoch = epoch_loss, epoch + 1
            res.state = snapshot(model)
        calm = calm + 1 if prev is not None and abs(epoch_loss - prev) < recipe.stop_tol else 0
        prev = epoch_loss
        if calm >= recipe.stop_patience:
            res.stopped_early, res.best_epoch = True, epoch + 1
            res.state = snapshot(model)
            break
    if res.diverged or not res.state:
        res.state = snapshot(model)
    settle_divergence(res, chance_loss(y))
    model.to(memory_format=torch.contiguous_format)  # hand the model back as it came
    return res


# Stacking the seeds pays on a GPU, and on CPU for convolutional models, which the stack
# runs channels-last (batched.py): over the default grid (cnn widths 1-16 x batch
# 16-1024), width 32 and ResNet18 it won every cell (benchmarks/bench_speed.py). An MLP's
# batched matmuls lose to plain ones once the work grows: there it pays up to about
# 2M parameters x batch size.
MLP_STACK_MAX_WORK_CPU = 2_000_000


def use_vectorized(vectorize, model: torch.nn.Module, batch_size: int, n_seeds: int,
                   device: torch.device) -> bool:
    if vectorize != "auto":
        return bool(vectorize) and n_seeds > 1
    if n_seeds < 2:
        return False
    if device.type == "cuda" or has_conv(model):
        return True
    return count_params(model) * batch_size <= MLP_STACK_MAX_WORK_CPU


def train_cell(*, arch: str, width: int, input_shape, n_classes: int, x: torch.Tensor,
               y: torch.Tensor, recipe: Recipe, seeds: list[int], device: torch.device,
               vectorize="auto"):
    """Train one model per seed on the same data; returns a TrainResult per seed.

    The models take x's dtype (float32 normally; float64 lets tests compare paths exactly).
    """
    template = build_model(arch, width, input_shape, n_classes, seed=0)
    if use_vectorized(vectorize, template, recipe.batch_size, len(seeds), device):
        from .batched import train_stacked
        return train_stacked(arch=arch, width=width, input_shape=input_shape,
                             n_classes=n_classes, x=x, y=y, recipe=recipe, seeds=seeds,
                             device=device)
    x, y = x.to(device), y.to(device)
    results = []
    for s in seeds:
        model = build_model(arch, width, input_shape, n_classes, seed=s).to(device, x.dtype)
        res = train_model(model, x, y, recipe, seed=s)
        res.state = {k: v.cpu() for k, v in res.state.items()}
        results.append(res)
    return results
