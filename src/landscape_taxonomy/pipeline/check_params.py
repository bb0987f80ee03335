"""What can be known to fail before any model trains: the checks of `check-params` (the
pipeline's first stage) beyond the schema's, on the planned grid alone.

    errors(p)    each a line naming the key: the run cannot give what it is asked for
    warnings(p)  each a line: it can, but may not (the reason, and what to set)

Today: a model or data loader given by import path that does not import, and `auto` phase
thresholds on a grid too small, or without the spread of mc they read.
"""

from __future__ import annotations

from math import comb

from ..cells import grid
from ..config.schema import Params
from ..errors import ConfigError
from ..report.thresholds import MIN_GROUP, MIN_SPLIT
from ..training import custom


def _auto(p: Params) -> set[str]:
    """The thresholds classify-phase will read off the grid (auto, and no baseline file)."""
    if p.phase.thresholds_from is not None:
        return set()
    return {k for k in ("train_loss", "mc", "cka")
            if getattr(p.phase, f"{k}_threshold") == "auto"}


def curve_pairs(p: Params) -> int:
    """Curve pairs per cell: the first metrics.curve.pairs of the seeds' pairs."""
    return min(p.metrics.curve.pairs, comb(p.grid.seeds, 2))


def errors(p: Params) -> list[str]:
    auto, n = _auto(p), len(grid.cells(p))
    out = []
    for key, name in (("model.arch", p.model.arch), ("data.dataset", p.data.dataset)):
        if custom.is_path(name):  # a researcher's own: it must import, before any work
            try:
                custom.resolve(name, key)
            except ConfigError as e:
                out.append(str(e))
    fix = "give a number or phase.thresholds_from"
    if "train_loss" in auto and n < MIN_SPLIT:
        out.append(f"phase.train_loss_threshold: auto splits the cells' training losses in "
                   f"two and needs at least {MIN_SPLIT} cells; this grid has {n}; {fix}")
    if "cka" in auto and n < MIN_SPLIT:
        out.append(f"phase.cka_threshold: auto splits the flat, connected cells' CKA and needs "
                   f"at least {MIN_SPLIT} of them; this grid has {n} cells; {fix}")
    if "mc" in auto and curve_pairs(p) < 2:
        # no spread of mc: the band falls back to splitting the flat cells' barriers, which
        # needs MIN_SPLIT flat cells, and an auto train-loss split leaves MIN_GROUP sharp
        need = MIN_SPLIT + (MIN_GROUP if "train_loss" in auto else 0)
        if n < need:
            out.append(f"phase.mc_threshold: auto reads mc's noise from 2 or more curve pairs "
                       f"per cell, and this grid gives {curve_pairs(p)} (grid.seeds "
                       f"{p.grid.seeds}, metrics.curve.pairs {p.metrics.curve.pairs}); "
                       f"without it auto needs {MIN_SPLIT} flat cells, more than {n} cells can "
                       f"give; set grid.seeds >= 3 and metrics.curve.pairs >= 2, or {fix}")
    return out


def warnings(p: Params) -> list[str]:
    out = []
    if "mc" in _auto(p) and curve_pairs(p) < 2 and not errors(p):
        out.append(f"warning: phase.mc_threshold: auto with {curve_pairs(p)} curve pair per "
                   f"cell has no measured noise band for mc; it will split the flat cells' "
                   f"barrier depths instead (needs {MIN_SPLIT} flat cells). grid.seeds >= 3 "
                   "and metrics.curve.pairs >= 2 measure the band")
    return out
