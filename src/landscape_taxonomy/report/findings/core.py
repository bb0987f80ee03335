"""What every finding uses: the cell table (metrics, phase, grid position, accuracy SE),
the bootstrap and its intervals, Spearman's rho, and the shape of a result."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..phases import PHASES

B = 1000  # bootstrap resamples
SEED = 0
HOLDS = "holds"
FAILS = "fails"
UNTESTABLE = "not testable here"
SHARP = ("I", "II")
FLAT = ("III", "IV-A", "IV-B")


def _spearman(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    x, y = rankdata(x[ok]), rankdata(y[ok])
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _indices(n_or_groups, b: int = B) -> np.ndarray:
    """(b, rows) resampled row indices: of range(n), or within each group of a list of index
    arrays (a stratified bootstrap)."""
    rng = np.random.default_rng(SEED)
    groups = [np.arange(n_or_groups)] if isinstance(n_or_groups, int) else n_or_groups
    return np.concatenate([g[rng.integers(0, len(g), (b, len(g)))] for g in groups if len(g)],
                          axis=1)


def _boot(n_or_groups, stat: Callable, b: int = B) -> np.ndarray:
    """The statistic of each resample (_indices): [b], or [b, k] for a statistic of k
    numbers."""
    return np.array([stat(idx) for idx in _indices(n_or_groups, b)])


def _spearman_boot(x, y, n: int) -> np.ndarray:
    """Spearman's rho of each of B resamples of n paired values, at once."""
    idx = _indices(n)
    rx, ry = rankdata(np.asarray(x, float)[idx], axis=1), rankdata(np.asarray(y, float)[idx],
                                                                   axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))


def _ci(samples: np.ndarray) -> list[float | None]:
    s = samples[np.isfinite(samples)]
    if len(s) < len(samples) / 2:
        return [None, None]
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


def _stat(value, samples=None, **extra) -> dict:
    out = {"value": None if value is None or not np.isfinite(value) else float(value)}
    if samples is not None:
        out["ci95"] = _ci(samples)
    return {**out, **extra}


def _result(claim: str, rule: str, verdict: str, headline: str, stats: dict, *,
            confident: bool | None = None, reason: str | None = None, **extra) -> dict:
    out = {"claim": claim, "rule": rule, "verdict": verdict, "headline": headline,
           "statistics": stats}
    if confident is not None:
        out["confident"] = bool(confident)
    if reason:
        out["reason"] = reason
    return {**out, **extra}


def _meets(value, threshold: float, sign: int) -> bool:
    """sign +1: at least the threshold (above it when that is 0); -1: below it."""
    if value is None or not np.isfinite(value):
        return False
    if sign > 0:
        return value > threshold if threshold == 0 else value >= threshold
    return value < threshold


def _verdict(*checks) -> tuple[bool, bool]:
    """(holds, confident) for a rule that needs every check, each (value, its 95% interval,
    threshold, sign as in _meets): it holds when every value meets its threshold, and is
    confident when the interval's unfavourable end does too; a failing rule is confident
    when some check fails even at its favourable end."""
    ok = all(_meets(v, th, sign) for v, _, th, sign in checks)
    if ok:
        sure = all(_meets(ci[0] if sign > 0 else ci[1], th, sign)
                   for _, ci, th, sign in checks)
    else:
        sure = any(ci[0] is not None and not _meets(ci[1] if sign > 0 else ci[0], th, sign)
                   for _, ci, th, sign in checks)
    return ok, sure


def _untestable(claim: str, rule: str, headline: str, reason: str) -> dict:
    return _result(claim, rule, UNTESTABLE, headline, {}, reason=reason)


def _hotter(t: pd.DataFrame) -> int:
    """+1 when a larger temperature value is hotter (lr, weight decay), -1 for batch size."""
    name = str(t["temperature_param"].iloc[0]) if "temperature_param" in t else "temperature"
    return -1 if "batch" in name.lower() else 1


def _axis(t: pd.DataFrame, which: str) -> str:
    col = f"{which}_param"
    return str(t[col].iloc[0]) if col in t and t[col].notna().any() else which


def cell_table(metrics: pd.DataFrame, phases: pd.DataFrame) -> pd.DataFrame:
    """The metrics with each cell's phase, its grid position (load rank `li` from the least
    load, temperature rank `ti` from the coldest) and its test accuracy's standard error `acc_se`
    (seeds' spread and the binomial test-set part; NaN when the table has neither)."""
    keep = [c for c in ("load", "temperature", "phase", "boundary") if c in phases]
    t = metrics.merge(phases[keep], on=["load", "temperature"], how="inner").copy()
    # load grows with width and data; label noise lowers it (clean labels are the load
    # label quality carries, Fig. 8): `li` counts from the least load
    sign = -1 if _axis(t, "load") == "noise" else 1
    t["li"] = (sign * t["load"]).rank(method="dense").astype(int) - 1
    hot = _hotter(t)
    t["ti"] = (hot * t["temperature"]).rank(method="dense").astype(int) - 1
    var = pd.Series(np.nan, index=t.index)
    if "test_acc_std" in t:
        live = (t["n_models"] - t.get("n_diverged", 0)).clip(lower=1) if "n_models" in t else 1
        var = t["test_acc_std"] ** 2 / live
    if "n_test" in t:
        binom = t["test_acc"] * (1 - t["test_acc"]) / t["n_test"]
        var = var.fillna(0) + binom
    t["acc_se"] = np.sqrt(var)
    return t.reset_index(drop=True)


def _by_phase(t: pd.DataFrame) -> list[np.ndarray]:
    return [np.flatnonzero(t["phase"].to_numpy() == p) for p in PHASES]


def _otsu(v: np.ndarray) -> float:
    v = np.sort(v)
    n = len(v)
    c = np.cumsum(v)
    i = np.arange(1, n)
    lo, hi = c[:-1] / i, (c[-1] - c[:-1]) / (n - i)
    score = i * (n - i) * (hi - lo) ** 2
    score[v[1:] == v[:-1]] = -1
    k = int(np.argmax(score))
    return (v[k] + v[k + 1]) / 2


SIGNS = {"cka": 1, "mc": 1, "hessian_top": -1, "hessian_trace": -1, "train_loss": -1, "l2": 1}
GLOBAL = ("cka", "mc")
LOCAL = ("hessian_top", "hessian_trace")

