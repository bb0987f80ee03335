"""The findings about the phase map itself: F1 (the arrangement), F2 (IV-B the most
accurate), F3 (the Hessian transition is the loss's), F4 (accuracy follows
connectivity, not the Hessian) and F10 (global metrics rank fitted cells best)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..phases import PHASES
from .core import (
    FAILS,
    FLAT,
    GLOBAL,
    HOLDS,
    LOCAL,
    SHARP,
    SIGNS,
    _boot,
    _by_phase,
    _otsu,
    _result,
    _spearman,
    _spearman_boot,
    _stat,
    _untestable,
    _verdict,
)

# F1 -------------------------------------------------------------------------------------

def f1_arrangement(t: pd.DataFrame, th: dict) -> dict:
    claim = ("all five phases appear, arranged as in Fig. 2: I < III < IV along load, II the "
             "hottest, IV-B between IV-A (colder) and II (hotter)")
    rule = ("holds: every phase on a cell and all five orderings hold on the phases' mean grid "
            "positions; confident: all hold in >= 95% of resamples of cells within phases")
    counts = {p: int((t["phase"] == p).sum()) for p in PHASES}
    missing = [p for p in PHASES if not counts[p]]
    li, ti, ph = t["li"].to_numpy(float), t["ti"].to_numpy(float), t["phase"].to_numpy()

    def orderings(idx):
        pos = {}
        for p in PHASES:
            sel = idx[ph[idx] == p]
            pos[p] = (li[sel].mean(), ti[sel].mean()) if len(sel) else (math.nan, math.nan)
        iv = idx[np.isin(ph[idx], ("IV-A", "IV-B"))]
        load_iv = li[iv].mean() if len(iv) else math.nan
        return {"I < III in load": pos["I"][0] < pos["III"][0],
                "III < IV in load": pos["III"][0] < load_iv,
                "II the hottest": all(pos["II"][1] > pos[p][1] for p in PHASES if p != "II"),
                "IV-B hotter than IV-A": pos["IV-B"][1] > pos["IV-A"][1],
                "IV-B colder than II": pos["IV-B"][1] < pos["II"][1]}

    if missing:
        return _result(claim, rule, FAILS, "orderings_held", {"cells": counts},
                       confident=True, reason=f"no cell in {', '.join(missing)}")
    held = orderings(np.arange(len(t)))
    groups = _by_phase(t)
    support = _boot(groups, lambda idx: float(all(orderings(idx).values()))).mean()
    n = sum(held.values())
    return _result(claim, rule, HOLDS if n == len(held) else FAILS, "orderings_held",
                   {"orderings_held": _stat(n), "support": _stat(support), "cells": counts,
                    "orderings": held,
                    "position": {p: {"load_rank": float(t.loc[t.phase == p, "li"].mean()),
                                     "temperature_rank": float(t.loc[t.phase == p, "ti"].mean())}
                                 for p in PHASES}},
                   confident=support >= 0.95 if n == len(held) else support <= 0.05)


# F2 -------------------------------------------------------------------------------------

def f2_iv_b_best(t: pd.DataFrame, th: dict, summary: dict | None = None) -> dict:
    claim = "the best test accuracy is in IV-B (well connected, similar, flat)"
    rule = ("holds: IV-B's mean test accuracy over its cells is the highest of the five; "
            "confident: its lead over the runner-up is >= 2 standard errors (seeds and test "
            "set, summary.json) or, without them, the cells' bootstrap interval is above 0")
    acc = t["test_acc"].to_numpy(float)
    ph = t["phase"].to_numpy()
    means = {p: float(acc[ph == p].mean()) for p in PHASES if (ph == p).any()}
    if "IV-B" not in means or len(means) < 2:
        return _untestable(claim, rule, "lead", "no IV-B cell, or no other phase to compare")
    runner = max((p for p in means if p != "IV-B"), key=means.get)
    lead = means["IV-B"] - means[runner]
    pair = [np.flatnonzero(ph == "IV-B"), np.flatnonzero(ph == runner)]
    boot = _boot(pair, lambda idx: acc[idx][ph[idx] == "IV-B"].mean()
                 - acc[idx][ph[idx] == runner].mean())
    stats = {"lead": _stat(lead, boot, over=runner), "mean_test_acc": means}
    by = (summary or {}).get("test_acc_by_phase", {})
    se = None
    if runner == "IV-A" and (summary or {}).get("iv_b_lead_over_iv_a", {}).get("se"):
        se = summary["iv_b_lead_over_iv_a"]["se"]
    elif by.get("IV-B", {}).get("se") is not None and by.get(runner, {}).get("se") is not None:
        se = math.hypot(by["IV-B"]["se"], by[runner]["se"])
    if se:
        stats["lead_in_se"] = _stat(lead / se, se=se)
        confident = lead / se >= 2 if lead > 0 else lead / se <= -2
    else:
        lo, hi = stats["lead"]["ci95"]
        confident = lo is not None and (lo > 0 if lead > 0 else hi < 0)
    return _result(claim, rule, HOLDS if lead > 0 else FAILS,
                   "lead_in_se" if se else "lead", stats, confident=confident)


# F3, F4 ---------------------------------------------------------------------------------

def f3_hessian_loss(t: pd.DataFrame, th: dict) -> dict:
    claim = ("the Hessian's sharp -> flat transition coincides with a more than tenfold fall "
             "of the training loss")
    rule = ("split the cells in two by log10 λmax (Otsu); holds: the train loss is >= 10x "
            "higher in the sharp group (geometric means) and the split agrees with the phase "
            "rule's sharp/flat on >= 80% of cells; confident: both at the interval's ends")
    need = t.dropna(subset=["hessian_top", "train_loss"])
    need = need[(need["hessian_top"] > 0) & (need["train_loss"] > 0)]
    if len(need) < 4:
        return _untestable(claim, rule, "fold", "fewer than 4 cells with λmax and train loss")
    lh = np.log10(need["hessian_top"].to_numpy(float))
    ll = np.log10(need["train_loss"].to_numpy(float))
    sharp_rule = need["train_loss"].to_numpy(float) > th["train_loss"]

    def both(idx):
        h = lh[idx]
        if len(np.unique(h)) < 2:
            return math.nan, math.nan
        hs = h > _otsu(h)
        if hs.all() or not hs.any():
            return math.nan, math.nan
        return 10 ** (ll[idx][hs].mean() - ll[idx][~hs].mean()), (hs == sharp_rule[idx]).mean()

    fold, agree = both(np.arange(len(need)))
    boot = _boot(len(need), both)  # [B, 2]: both statistics of each resample
    stats = {"fold": _stat(fold, boot[:, 0]), "agreement": _stat(agree, boot[:, 1])}
    ok, confident = _verdict((fold, stats["fold"]["ci95"], 10, 1),
                             (agree, stats["agreement"]["ci95"], 0.8, 1))
    return _result(claim, rule, HOLDS if ok else FAILS, "fold", stats, confident=confident)


def f4_connectivity_not_hessian(t: pd.DataFrame, th: dict) -> dict:
    claim = ("test accuracy jumps at the connectivity transition, not the Hessian's: III and "
             "IV-A have about the same Hessian but different accuracy")
    rule = ("holds: IV-A's mean test accuracy is above III's, and the gap in mean log10 λmax "
            "between III and IV-A is under half the gap between the sharp (I, II) and flat "
            "(III, IV) cells; confident: both at the ends of the cells' bootstrap intervals")
    ph = t["phase"].to_numpy()
    if not ((ph == "III").any() and (ph == "IV-A").any() and np.isin(ph, SHARP).any()):
        return _untestable(claim, rule, "acc_gap", "needs III, IV-A and sharp (I/II) cells")
    acc = t["test_acc"].to_numpy(float)
    lh = np.log10(t["hessian_top"].clip(lower=1e-12).to_numpy(float))

    def stats_of(idx):
        p, a, h = ph[idx], acc[idx], lh[idx]
        gap = a[p == "IV-A"].mean() - a[p == "III"].mean()
        transition = h[np.isin(p, SHARP)].mean() - h[np.isin(p, FLAT)].mean()
        same = abs(h[p == "IV-A"].mean() - h[p == "III"].mean())
        return gap, same / transition if transition > 0 else math.nan

    gap, ratio = stats_of(np.arange(len(t)))
    boot = _boot(_by_phase(t), stats_of)  # [B, 2]
    stats = {"acc_gap": _stat(gap, boot[:, 0]), "hessian_gap_ratio": _stat(ratio, boot[:, 1])}
    ok, confident = _verdict((gap, stats["acc_gap"]["ci95"], 0, 1),
                             (ratio, stats["hessian_gap_ratio"]["ci95"], 0.5, -1))
    return _result(claim, rule, HOLDS if ok else FAILS, "acc_gap", stats, confident=confident)


def f10_global_beats_local(t: pd.DataFrame, th: dict) -> dict:
    claim = ("among the fitted (flat) cells, a global metric (CKA or mc) ranks test accuracy "
             "better than the Hessian does")
    rule = ("Spearman of each metric with test accuracy (signed so that + predicts higher "
            "accuracy), over the flat cells; holds: the better global metric's beats the "
            "better Hessian metric's; confident: the paired bootstrap interval of the "
            "difference is above 0")
    metrics = [m for m in SIGNS if m in t and t[m].notna().any()]
    flat = t[t["train_loss"] <= th["train_loss"]].reset_index(drop=True)
    if len(flat) < 5 or not any(m in metrics for m in GLOBAL) \
            or not any(m in metrics for m in LOCAL):
        return _untestable(claim, rule, "global_minus_hessian",
                           "needs 5 flat cells with CKA or mc and the Hessian")
    acc = flat["test_acc"].to_numpy(float)
    cols = {m: flat[m].to_numpy(float) * SIGNS[m] for m in metrics}

    ok = np.isfinite(acc) & np.all([np.isfinite(v) for v in cols.values()], axis=0)
    acc, cols = acc[ok], {m: v[ok] for m, v in cols.items()}
    point = {m: _spearman(v, acc) for m, v in cols.items()}
    boots = {m: _spearman_boot(v, acc, len(acc)) for m, v in cols.items()}
    with warnings.catch_warnings():  # a resample where one metric is constant: nan
        warnings.simplefilter("ignore", RuntimeWarning)
        d = np.nanmax([point.get(m, np.nan) for m in GLOBAL]) \
            - np.nanmax([point.get(m, np.nan) for m in LOCAL])
        boot = np.nanmax([boots[m] for m in GLOBAL if m in boots], axis=0) \
            - np.nanmax([boots[m] for m in LOCAL if m in boots], axis=0)
    every = {}
    for name, sub in (("all_cells", t), ("flat_cells", flat)):
        a = sub["test_acc"].to_numpy(float)
        every[name] = {}
        for m in metrics:
            v = sub[m].to_numpy(float) * SIGNS[m]
            ok = np.isfinite(v) & np.isfinite(a)
            every[name][m] = _stat(_spearman(v, a), _spearman_boot(v[ok], a[ok], int(ok.sum())))
    stats = {"global_minus_hessian": _stat(d, boot, flat_cells=len(acc)), "spearman": every}
    lo, hi = stats["global_minus_hessian"]["ci95"]
    ok = bool(np.isfinite(d) and d > 0)
    return _result(claim, rule, HOLDS if ok else FAILS, "global_minus_hessian", stats,
                   confident=lo is not None and (lo > 0 if ok else hi <= 0))


