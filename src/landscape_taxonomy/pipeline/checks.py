"""Checks a grid must pass before any work: every cell's subset holds a sample per class,
no batch is larger than the training set it is drawn from.
"""

from __future__ import annotations

import math

from ..cells import grid
from ..cells.io import number_text
from ..config.schema import Params
from ..errors import ConfigError
from ..training import data as data_mod


def check_subsets(p: Params, prep: data_mod.Prepared) -> None:
    """Before any training: every cell's subset must hold at least one sample per class (and
    two, for BatchNorm); a smaller one could only ever "diverge"."""
    n_all, k = prep.n_train, prep.n_classes
    need = max(k, 2)
    for subset in sorted({c.subset for c in grid.cells(p)}):
        n = data_mod.subset_size(n_all, subset)
        if n >= need:
            continue
        digits = 2 - math.floor(math.log10(need / n_all))  # 3 significant, rounded up
        least = math.ceil(need / n_all * 10 ** digits) / 10 ** digits
        key = "grid.load.values: subset" if p.grid.load.param == "subset" else "data.subset:"
        raise ConfigError(f"{key} {number_text(subset)} leaves {n} of {n_all} training "
                          f"samples; a cell needs at least {need} (one per class), so the "
                          f"subset must be >= {least:g}")


def check_batch_sizes(p: Params, prep: data_mod.Prepared, stage: str = "train",
                      subsets=None) -> None:
    """Before any work: no batch larger than the training set it is drawn from (a slip, or
    a grid meant for another dataset; the whole set is one batch at most). `stage`: the
    training batches (train, over the grid's cells) or the curves' (metrics, over the
    `subsets` of the trained cells), each checked by the stage that reads it."""
    if stage == "train":
        key = ("grid.temperature.values: batch_size"
               if p.grid.temperature.param == "batch_size" else "train.batch_size:")
        pairs = [(c.subset, c.batch_size) for c in grid.cells(p)]
    else:
        key = "metrics.curve.batch_size:"
        pairs = [(s, p.metrics.curve.batch_size) for s in subsets]
    for subset, b in pairs:
        n = data_mod.subset_size(prep.n_train, subset)
        if b > n:
            raise ConfigError(f"{key} {b} is larger than the {n} training samples a cell of "
                              f"this grid trains on (subset {number_text(subset)} of "
                              f"{prep.n_train}); at most {n}, the whole set")
