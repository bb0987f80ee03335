"""The findings under label noise: F5 (double descent along both axes, located) and F6
(a sharp, unconverged cell beats the flat, poorly connected one next to it)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .core import FAILS, HOLDS, SHARP, _axis, _boot, _result, _spearman, _stat, _untestable


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


