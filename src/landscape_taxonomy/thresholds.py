"""Phase boundaries read off the data (`auto`), as the paper reads them off its figures.

The paper gives no numbers. Each boundary here is found from the table itself:

    train loss  two-group split (Otsu) of log10 train loss over all cells: sharp vs flat.
                The paper's sharp/flat transition is a more than tenfold fall in training
                loss; the fold between the two groups' geometric means is reported.
    mc          the "≈ 0" band: z x the median spread of mc over seed pairs (`mc_std`, cells
                with at least 2 curve pairs) among the flat cells. mc is a percentage of
                training error: models that cannot fit (narrow, or held up by strong decay)
                have mc spreads of 5-20 points between pairs that measure how badly they
                fit, not how precisely mc is measured, and would widen the band until a
                barrier of several points counted as "≈ 0". With fewer than MIN_SPLIT flat
                cells holding a spread, every cell's spread is used, and the method says so.
                A table without any spread (one curve per cell, as published tables often
                are) falls back to a two-group split of the flat cells' barrier depth
                log(1 + max(-mc, 0)), and says so.
    cka         two-group split of log(1 - CKA) over the flat, well-connected cells
                (IV-A vs IV-B). 1 - CKA is a dissimilarity that, like a loss, spreads
                over a scale rather than a range, so it is split on the log scale.

A number given for a threshold is used as it is. `resolve` returns each threshold with how
it was found, for summary.json.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

MC_NOISE_Z = 2.0  # the band is ±2 pair-to-pair standard deviations of mc
MIN_SPLIT = 4  # fewer cells than this cannot be split into two groups with any confidence


@dataclass(frozen=True)
class Threshold:
    value: float
    method: str  # "given", or how the auto value was found
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def two_group_split(values) -> tuple[float, dict]:
    """Otsu's split of 1-D values: the cut maximizing the between-group variance (the
    optimal 2-means). Returns the cut halfway between the two values it falls between,
    and the groups' sizes and means."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    csum = np.cumsum(v)
    i = np.arange(1, n)  # i values in the low group
    low_mean = csum[:-1] / i
    high_mean = (csum[-1] - csum[:-1]) / (n - i)
    score = i * (n - i) * (high_mean - low_mean) ** 2
    score[v[1:] == v[:-1]] = -1.0  # a cut must fall between distinct values
    k = int(np.argmax(score))
    cut = (v[k] + v[k + 1]) / 2
    return float(cut), {"n_low": int(k + 1), "n_high": int(n - k - 1),
                        "low_mean": float(low_mean[k]), "high_mean": float(high_mean[k])}


def _finite(s: pd.Series) -> pd.Series:
    s = pd.to_numeric(s, errors="coerce")
    return s[np.isfinite(s)]


def auto_train_loss(table: pd.DataFrame) -> Threshold:
    loss = _finite(table["train_loss"])
    loss = loss[loss > 0]
    if loss.nunique() < MIN_SPLIT:
        raise ValueError(f"phase.train_loss_threshold: auto needs at least {MIN_SPLIT} cells "
                         f"with distinct positive train_loss, got {loss.nunique()}; give a number")
    cut, d = two_group_split(np.log10(loss))
    fold = 10 ** (d["high_mean"] - d["low_mean"])
    return Threshold(10 ** cut, "two-group split of log10 train_loss", {
        "cells_flat": d["n_low"], "cells_sharp": d["n_high"],
        "fold_between_groups": float(fold), "tenfold": bool(fold > 10)})


def auto_mc(table: pd.DataFrame, train_loss_threshold: float) -> Threshold:
    flat = pd.to_numeric(table["train_loss"], errors="coerce") <= train_loss_threshold
    if "mc_std" in table.columns:
        std = pd.to_numeric(table["mc_std"], errors="coerce")
        ok = np.isfinite(std) & (std > 0)
        if "n_curve_pairs" in table.columns:
            ok &= pd.to_numeric(table["n_curve_pairs"], errors="coerce") >= 2
        among = "flat cells"
        if (ok & flat).sum() >= MIN_SPLIT:
            ok &= flat
        else:
            among = f"all cells (fewer than {MIN_SPLIT} flat cells have a spread)"
        if ok.any():
            sigma = float(std[ok].median())
            return Threshold(MC_NOISE_Z * sigma,
                             f"{MC_NOISE_Z:g} x median spread of mc over seed pairs, {among}",
                             {"median_mc_std": sigma, "cells": int(ok.sum())})
    depth = _finite(-pd.to_numeric(table.loc[flat, "mc"], errors="coerce")).clip(lower=0)
    if depth.nunique() < MIN_SPLIT:
        raise ValueError("phase.mc_threshold: auto needs an mc_std column (mc's spread over "
                         f"seed pairs) or at least {MIN_SPLIT} flat cells with distinct mc; "
                         "give a number")
    cut, d = two_group_split(np.log1p(depth))
    return Threshold(float(np.expm1(cut)),
                     "no mc spread in the table: two-group split of the flat cells' barrier "
                     "depth log(1 + max(-mc, 0))",
                     {"cells_connected": d["n_low"], "cells_barrier": d["n_high"]})


def auto_cka(table: pd.DataFrame, train_loss_threshold: float, mc_threshold: float) -> Threshold:
    loss = pd.to_numeric(table["train_loss"], errors="coerce")
    mc = pd.to_numeric(table["mc"], errors="coerce")
    connected_flat = (loss <= train_loss_threshold) & (mc >= -mc_threshold)
    cka = _finite(table.loc[connected_flat, "cka"]).clip(upper=1 - 1e-9)
    if cka.nunique() < MIN_SPLIT:
        return Threshold(math.nan, f"too few flat, well-connected cells to split "
                                   f"({cka.nunique()} < {MIN_SPLIT}): IV cells undetermined",
                         {"cells": int(len(cka))})
    cut, d = two_group_split(np.log(1 - cka))
    return Threshold(float(1 - np.exp(cut)),
                     "two-group split of log(1 - cka) over flat, well-connected cells",
                     {"cells_iv_b": d["n_low"], "cells_iv_a": d["n_high"]})


def resolve(table: pd.DataFrame, *, train_loss="auto", mc="auto", cka="auto") -> dict:
    """{'train_loss': Threshold, 'mc': ..., 'cka': ...}: given numbers as they are, `auto`
    ones found from the table (in this order, since each later split uses the earlier)."""
    def given(v):
        return Threshold(float(v), "given")
    tl = auto_train_loss(table) if train_loss == "auto" else given(train_loss)
    m = auto_mc(table, tl.value) if mc == "auto" else given(mc)
    c = auto_cka(table, tl.value, m.value) if cka == "auto" else given(cka)
    return {"train_loss": tl, "mc": m, "cka": c}
