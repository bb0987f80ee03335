"""What each load axis buys: F7 (width: connectivity), F8 (data: similarity, not
connectivity), F9 (clean labels: connectivity, the fitted Hessian unchanged)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .core import FAILS, HOLDS, SIGNS, _axis, _boot, _ci, _result, _spearman, _stat, _untestable


def _per_column(t: pd.DataFrame, x: str, y) -> tuple[float, list]:
    """The mean over temperature columns of Spearman(x, y) along load, and its bootstrap
    interval over columns."""
    rhos = []
    for _, col in t.groupby("ti"):
        yv = y(col) if callable(y) else col[y]
        r = _spearman(col[x], yv)
        if np.isfinite(r):
            rhos.append(r)
    if not rhos:
        return math.nan, [None, None]
    rhos = np.array(rhos)
    return float(rhos.mean()), _ci(_boot(len(rhos), lambda idx: rhos[idx].mean()))


def _trend(value, ci, sign: int) -> tuple[bool, bool]:
    """(holds, confident) for a correlation expected to have `sign`."""
    ok = np.isfinite(value) and sign * value > 0
    lo, hi = ci
    end = (lo if sign > 0 else hi) if ok else (hi if sign > 0 else lo)
    confident = end is not None and (sign * end > 0 if ok else sign * end <= 0)
    return bool(ok), bool(confident)


def f7_width_connects(t: pd.DataFrame, th: dict) -> dict:
    claim = "width buys connectivity: mc rises toward 0 with width at fixed temperature"
    rule = ("per temperature column, Spearman(width, -|mc|); holds: the mean over columns is "
            "> 0; confident: its bootstrap interval over columns is")
    if _axis(t, "load") != "width":
        return _untestable(claim, rule, "rho", f"needs width as the load axis (here "
                                               f"{_axis(t, 'load')})")
    v, ci = _per_column(t, "load", lambda c: -c["mc"].abs())
    if not np.isfinite(v):
        return _untestable(claim, rule, "rho", "no column with 3 cells that differ in mc")
    ok, confident = _trend(v, ci, 1)
    return _result(claim, rule, HOLDS if ok else FAILS, "rho", {"rho": _stat(v, ci95=ci)},
                   confident=confident)


def f8_data_similarity(t: pd.DataFrame, th: dict) -> dict:
    claim = ("more data buys similarity, not connectivity: CKA rises with the data fraction, "
             "the connected region shrinks, and only CKA tracks accuracy along it")
    rule = ("per temperature column along the data fraction: Spearman(subset, cka) > 0, "
            "Spearman(subset, mc) <= 0, and CKA's Spearman with test accuracy the highest of "
            "the metrics (each signed to predict higher accuracy); holds: all three")
    if _axis(t, "load") != "subset":
        return _untestable(claim, rule, "rho_cka", f"needs data fraction (subset) as the load "
                                                   f"axis (here {_axis(t, 'load')})")
    cka, cka_ci = _per_column(t, "load", "cka")
    mc, mc_ci = _per_column(t, "load", "mc")
    tracks = {m: _per_column(t, m, "test_acc")[0] * s for m, s in SIGNS.items() if m in t}
    best = max((m for m in tracks if np.isfinite(tracks[m])), key=tracks.get, default=None)
    ok = cka > 0 and mc <= 0 and best == "cka"
    c1 = _trend(cka, cka_ci, 1)[1]
    c2 = mc_ci[1] is not None and mc_ci[1] <= 0
    return _result(claim, rule, HOLDS if ok else FAILS, "rho_cka",
                   {"rho_cka": _stat(cka, ci95=cka_ci), "rho_mc": _stat(mc, ci95=mc_ci),
                    "tracks_accuracy": tracks, "best_tracker": best},
                   confident=bool(c1 and c2) if ok else bool(
                       (cka_ci[1] is not None and cka_ci[1] <= 0)
                       or (mc_ci[0] is not None and mc_ci[0] > 0)))


def f9_clean_labels_connect(t: pd.DataFrame, th: dict) -> dict:
    claim = ("cleaner labels buy connectivity: mc and CKA fall as label noise grows while, "
             "once fitted, the Hessian barely changes")
    rule = ("per temperature column along noise: Spearman(noise, mc) < 0 and "
            "Spearman(noise, cka) < 0; the fitted cells' (train loss under its threshold) "
            "Hessian trace changes less than 2x along a column (median over columns); "
            "holds: all three")
    if _axis(t, "load") != "noise":
        return _untestable(claim, rule, "rho_mc", f"needs label noise as the load axis (here "
                                                  f"{_axis(t, 'load')})")
    mc, mc_ci = _per_column(t, "load", "mc")
    cka, cka_ci = _per_column(t, "load", "cka")
    folds = []
    for _, col in t[t["train_loss"] <= th["train_loss"]].groupby("ti"):
        tr = col["hessian_trace"].dropna()
        if len(tr) >= 2 and (tr > 0).all():
            folds.append(float(tr.max() / tr.min()))
    fold = float(np.median(folds)) if folds else math.nan
    ok = mc < 0 and cka < 0 and np.isfinite(fold) and fold < 2
    return _result(claim, rule, HOLDS if ok else FAILS, "rho_mc",
                   {"rho_mc": _stat(mc, ci95=mc_ci), "rho_cka": _stat(cka, ci95=cka_ci),
                    "fitted_trace_fold": _stat(fold, columns=len(folds))},
                   confident=bool(_trend(mc, mc_ci, -1)[1] and _trend(cka, cka_ci, -1)[1]))


