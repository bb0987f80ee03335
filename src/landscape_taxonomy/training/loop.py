"""Training: the paper's SGD recipe on tensors held on the device, batched by index.

`train_model` trains one model; `train_cell` trains every seed of a grid cell. The kept
checkpoint is the paper's: the early-stopped model, else the one with the lowest training
loss. A loss that turns NaN or infinite ends that model as diverged; the caller goes on.
That rule, the recipe and the result type are recipe.py's, shared with batched.py (seeds
stacked), which this module calls and which never calls back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batched import train_stacked
from .models import build_model, count_params, fast_layout, has_batchnorm, has_conv
from .recipe import Recipe, StopRule, TrainResult, chance_loss, settle_divergence, sgd
from .stacked import stackable

__all__ = ["Recipe", "TrainResult", "resolve_device", "train_model", "train_cell"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: cuda was asked for but torch sees no CUDA device")
    if device == "cuda":
        deterministic_cuda()
    return torch.device(device)


def deterministic_cuda() -> None:
    """The same params and seed give the same bytes on one GPU, as on CPU: cuDNN picks
    deterministic kernels and does not benchmark, TF32 is off (it rounds float32 matmuls
    to 10 bits), and cuBLAS gets the fixed workspace its deterministic mode needs. Set in
    the process that computes, before its first CUDA call; the cell keys record it
    (pipeline.runtime_key)."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


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
    res, rule = TrainResult(state={}), StopRule(recipe)
    for epoch in range(recipe.max_epochs):
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        perm = torch.randperm(n, generator=g).to(x.device)
        model.train()
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device)
        seen = 0
        for i in range(0, recipe.batches_end(n), bs):
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
        if not rule.end_epoch(res, epoch, recipe.lr_at(epoch), (loss_sum / seen).item(),
                              (correct / seen).item(), lambda: snapshot(model)):
            break
    if not res.state:
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
    if not stackable(model):  # a layer the stack does not cover: one seed at a time
        return False
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
