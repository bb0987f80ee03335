"""The training recipe, written once for every way of training: hyperparameters, the lr
schedule, the optimizer, the stop rule, and what a trained model comes back as.

loop.py trains one model at a time, batched.py all seeds of a cell as one stacked network;
both import this module and neither imports the other's loop, so the stop rule and the kept
checkpoint cannot differ between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

# torch is imported inside the functions that compute: the stages build Recipes (and the
# cell keys from them) before they know whether any cell needs computing.


@dataclass(frozen=True)
class Recipe:
    """One cell's training recipe. No defaults here: config.TrainConfig holds them, and
    `from_config` fills a recipe from it (pipeline.recipe_of, with the cell's axis values)."""

    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    stop_tol: float
    stop_patience: int
    lr_schedule: str  # "constant", or "step": x lr_decay_factor from lr_decay_at of the epochs
    lr_decay_at: float
    lr_decay_factor: float
    drop_last: bool  # skip each epoch's short last batch (n % batch_size examples)

    @classmethod
    def from_config(cls, train_config=None, **overrides) -> Recipe:
        """The recipe of a `config.TrainConfig` (the schema's defaults when none is given),
        with overrides."""
        if train_config is None:
            from ..config.schema import TrainConfig
            train_config = TrainConfig()
        values = {f.name: getattr(train_config, f.name) for f in fields(cls)}
        return cls(**{**values, **overrides})

    def batches_end(self, n: int) -> int:
        """Where an epoch's batches stop: n, or the last full batch's end with drop_last
        (never fewer than one batch)."""
        return n - n % self.batch_size if self.drop_last and n >= self.batch_size else n

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
    # "stacked": trained with the cell's other seeds as one network (batched.py)
    path: str = "one seed at a time"


def sgd(params, recipe: Recipe):
    """The recipe's SGD, as one fused kernel over all tensors where torch has one (CPU and
    CUDA): a third of the for-loop step's time, the same update."""
    from .optim import FusedSGD

    return FusedSGD(params, lr=recipe.lr, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay)


class StopRule:
    """The paper's stop rule and kept checkpoint for one model, fed one epoch at a time.

    Training stops early when the epoch's training loss has changed by less than `stop_tol`
    for `stop_patience` epochs in a row, and that model is kept; otherwise the model with the
    lowest training loss so far is kept. A diverged loss (`diverged`) ends the model, and its
    last state is kept.
    """

    def __init__(self, recipe: Recipe):
        self.tol, self.patience = recipe.stop_tol, recipe.stop_patience
        self.best = math.inf
        self.prev: float | None = None
        self.calm = 0

    def diverged(self, loss: float) -> bool:
        """Whether this epoch's loss ends the model as diverged: NaN or infinite."""
        return not math.isfinite(loss)

    def end_epoch(self, res: TrainResult, epoch: int, lr: float, loss: float, acc: float,
                  snapshot: Callable[[], dict]) -> bool:
        """Log epoch `epoch` (0-based) into `res`, keep the state the rule keeps (`snapshot()`
        copies the model's), and return whether training goes on."""
        res.epochs = epoch + 1
        res.log.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_acc": acc})
        if self.diverged(loss):
            res.diverged = True
            res.state = snapshot()
            return False
        if loss < self.best:
            self.best, res.best_epoch = loss, epoch + 1
            res.state = snapshot()
        calm = self.prev is not None and abs(loss - self.prev) < self.tol
        self.calm = self.calm + 1 if calm else 0
        self.prev = loss
        if self.calm >= self.patience:
            res.stopped_early, res.best_epoch = True, epoch + 1
            res.state = snapshot()
            return False
        return True


def chance_loss(y) -> float:
    """The training loss of the best guess that ignores the input: the label frequencies of
    y, whose cross-entropy is their entropy (ln K for K balanced classes)."""
    import torch

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
