"""The paper's findings beyond its phase map, each computed from a study's tables with a
statistic, a 95% interval and a verdict (README: "What the study finds").

    F1  five phases, arranged as in Fig. 2          F6  with noise: lower loss, worse test
    F2  IV-B is the most accurate phase              F7  width buys connectivity
    F3  Hessian transition = tenfold loss fall       F8  data buys similarity, not connectivity
    F4  III and IV-A: same Hessian, other accuracy   F9  clean labels buy connectivity
    F5  double descent under label noise             F10 global metrics rank fitted cells best

Each reads a cell table: the metrics with the phases merged in (classify's output) and the
three thresholds used. The intervals come from a bootstrap over cells (stratified by phase
where phases are compared; over lines of the grid where a statistic is per line), with a
fixed seed, so the same tables give the same bytes; where a statistic compares single cells
(F5's dips, F6's neighbours) it uses the cells' own noise (seeds and test set). Verdicts:
`holds`, `fails`, or `not testable here` with what the grid lacks; `confident` says whether
the rule still holds at the unfavourable end of the interval, so that noise cannot turn it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .phases import PHASES

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
    """The statistic of each resample (_indices)."""
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
                   confident=n == len(held) and support >= 0.95 or n < len(held))


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
    boot = _boot(len(need), lambda idx: both(idx)[0])
    boot_a = _boot(len(need), lambda idx: both(idx)[1])
    stats = {"fold": _stat(fold, boot), "agreement": _stat(agree, boot_a)}
    ok = fold >= 10 and agree >= 0.8
    (flo, fhi), (alo, ahi) = stats["fold"]["ci95"], stats["agreement"]["ci95"]
    confident = (flo is not None and alo is not None and flo >= 10 and alo >= 0.8) if ok \
        else (fhi is not None and ahi is not None and (fhi < 10 or ahi < 0.8))
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
    groups = _by_phase(t)
    boot_g = _boot(groups, lambda idx: stats_of(idx)[0])
    boot_r = _boot(groups, lambda idx: stats_of(idx)[1])
    stats = {"acc_gap": _stat(gap, boot_g), "hessian_gap_ratio": _stat(ratio, boot_r)}
    ok = gap > 0 and ratio < 0.5
    (glo, ghi), (rlo, rhi) = stats["acc_gap"]["ci95"], stats["hessian_gap_ratio"]["ci95"]
    confident = (glo is not None and rhi is not None and glo > 0 and rhi < 0.5) if ok \
        else (ghi is not None and rlo is not None and (ghi < 0 or rlo >= 0.5))
    return _result(claim, rule, HOLDS if ok else FAILS, "acc_gap", stats, confident=confident)


# F5, F6: label noise ---------------------------------------------------------------------

def _noise_level(t: pd.DataFrame) -> tuple[float | None, str | None]:
    """The study's fixed label-noise level, or why the noise findings cannot be read."""
    if _axis(t, "load") == "noise" or _axis(t, "temperature") == "noise":
        return None, "noise is a grid axis here; this needs a fixed noise level > 0"
    if "noise" not in t or t["noise"].isna().all():
        return None, "the table has no noise column"
    level = float(t["noise"].max())
    if level <= 0:
        return None, "needs label noise (noise is 0): e.g. dvc exp run -S noise=0.1"
    return level, None


def _dips(t: pd.DataFrame, along: str) -> list[dict]:
    """Per line of the grid (fixed temperature when `along` is load, and the reverse), its
    deepest dip: a cell below the best cells on both sides of it, by `depth`, in units of
    the two cells' combined standard error."""
    other = "ti" if along == "load" else "li"
    pos = "li" if along == "load" else "ti"
    out = []
    for _, line in t.groupby(other):
        line = line.sort_values(pos)
        a, se = line["test_acc"].to_numpy(float), line["acc_se"].to_numpy(float)
        s = line["phase"].isin(SHARP).to_numpy()
        best = None
        for j in range(1, len(a) - 1):
            left, right = int(np.argmax(a[:j])), j + 1 + int(np.argmax(a[j + 1:]))
            side = left if a[left] < a[right] else right
            depth = a[side] - a[j]
            if depth <= 0:
                continue
            z = depth / math.hypot(se[j], se[side]) if np.isfinite(se[[j, side]]).all() \
                and math.hypot(se[j], se[side]) > 0 else math.nan
            if best is None or depth > best["depth"]:
                near = s[max(j - 1, 0):j + 2]
                r = line.iloc[j]
                best = {"line": {("temperature" if along == "load" else "load"):
                                 float(r["temperature" if along == "load" else "load"])},
                        "cell": {"load": float(r["load"]), "temperature": float(r["temperature"])},
                        "phase": str(r["phase"]), "depth": float(depth), "depth_in_se": z,
                        "at_hessian_transition": bool(near.any() and not near.all())}
        if best is not None:
            out.append(best)
    return out


def f5_double_descent(t: pd.DataFrame, th: dict) -> dict:
    claim = ("with label noise, test accuracy descends twice along load at fixed temperature "
             "and along temperature at fixed load, the dip at the Hessian transition")
    rule = ("a dip: a cell whose accuracy is below the best cells on both sides of it on its "
            "line by >= 2 SE (the cells' seeds and test set); holds: a dip along load and one "
            "along temperature; at_transition counts those next to a sharp/flat change")
    level, why = _noise_level(t)
    if why:
        return _untestable(claim, rule, "dips_along_load", why)
    if t["acc_se"].isna().all():
        return _untestable(claim, rule, "dips_along_load",
                           "the table has no test_acc_std or n_test to tell a dip from noise")
    found = {a: [d for d in _dips(t, a) if d["depth_in_se"] is not None
                 and d["depth_in_se"] >= 2] for a in ("load", "temperature")}
    at = sum(d["at_hessian_transition"] for ds in found.values() for d in ds)
    stats = {"dips_along_load": _stat(len(found["load"])),
             "dips_along_temperature": _stat(len(found["temperature"])),
             "at_transition": _stat(at), "noise": _stat(level)}
    ok = bool(found["load"]) and bool(found["temperature"])
    return _result(claim, rule, HOLDS if ok else FAILS, "dips_along_load", stats,
                   confident=True, dips=found)


def _neighbours(t: pd.DataFrame) -> list[tuple[int, int]]:
    """(sharp I/II cell, III cell) pairs next to each other on the grid."""
    where = {(r.li, r.ti): i for i, r in enumerate(t.itertuples())}
    out = []
    for i, r in enumerate(t.itertuples()):
        if r.phase != "III":
            continue
        for d in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            j = where.get((r.li + d[0], r.ti + d[1]))
            if j is not None and t["phase"].iloc[j] in SHARP:
                out.append((j, i))
    return out


def f6_zero_loss_hurts(t: pd.DataFrame, th: dict) -> dict:
    claim = ("with label noise and poor connectivity, training to lower loss hurts: a sharp, "
             "unconverged I/II cell beats the flat III cell next to it")
    rule = ("over the pairs of neighbouring (I or II, III) cells, holds: the mean accuracy "
            "difference sharp - III is > 0; confident: its bootstrap interval over pairs is")
    level, why = _noise_level(t)
    if why:
        return _untestable(claim, rule, "sharp_minus_iii", why)
    pairs = _neighbours(t)
    if not pairs:
        return _untestable(claim, rule, "sharp_minus_iii", "no I/II cell next to a III cell")
    acc = t["test_acc"].to_numpy(float)
    diff = np.array([acc[s] - acc[f] for s, f in pairs])
    boot = _boot(len(diff), lambda idx: diff[idx].mean())
    poor = t[t["phase"].isin(("I", "III"))]
    stats = {"sharp_minus_iii": _stat(diff.mean(), boot, pairs=len(diff)),
             "share_sharp_better": _stat(float((diff > 0).mean())),
             "spearman_loss_acc_poorly_connected": _stat(
                 _spearman(poor["train_loss"], poor["test_acc"]))}
    lo, hi = stats["sharp_minus_iii"]["ci95"]
    ok = diff.mean() > 0
    return _result(claim, rule, HOLDS if ok else FAILS, "sharp_minus_iii", stats,
                   confident=lo is not None and (lo > 0 if ok else hi <= 0))


# F7-F9: what each load axis buys -----------------------------------------------------------

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
                   confident=bool(c1 and c2) if ok else None)


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


# F10 ------------------------------------------------------------------------------------

SIGNS = {"cka": 1, "mc": 1, "hessian_top": -1, "hessian_trace": -1, "train_loss": -1, "l2": 1}
GLOBAL = ("cka", "mc")
LOCAL = ("hessian_top", "hessian_trace")


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


FINDINGS = {"F1": f1_arrangement, "F2": f2_iv_b_best, "F3": f3_hessian_loss,
            "F4": f4_connectivity_not_hessian, "F5": f5_double_descent,
            "F6": f6_zero_loss_hurts, "F7": f7_width_connects, "F8": f8_data_similarity,
            "F9": f9_clean_labels_connect, "F10": f10_global_beats_local}


def evaluate(metrics: pd.DataFrame, phases: pd.DataFrame, thresholds: dict,
             summary: dict | None = None) -> dict:
    """Every finding on one study. `thresholds`: {"train_loss", "mc", "cka"} -> the values
    the phases were sorted with."""
    t = cell_table(metrics, phases)
    t = t[t["phase"].isin(PHASES)].reset_index(drop=True)
    out = {}
    for key, fn in FINDINGS.items():
        out[key] = fn(t, thresholds, summary) if key == "F2" else fn(t, thresholds)
    return out


def headline(found: dict) -> dict:
    """The DVC metrics view: each finding's verdict, whether noise could turn it, and its
    headline number; `dvc exp show` sets these side by side across experiments."""
    out = {}
    for key, f in found.items():
        row = {"verdict": f["verdict"]}
        if "confident" in f:
            row["confident"] = f["confident"]
        value = f["statistics"].get(f["headline"], {})
        if isinstance(value, dict) and value.get("value") is not None:
            row[f["headline"]] = value["value"]
        out[key] = row
    return out
