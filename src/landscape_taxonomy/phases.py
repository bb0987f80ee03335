"""The paper's taxonomy applied to a metrics table.

    sharp  = train_loss > train_loss_threshold         (high loss, large Hessian)
    poorly connected = mc < -mc_threshold               (a barrier on the curve)
    I: sharp, poorly connected     II: sharp, connected (mc ≈ 0 or > 0)
    III: flat, poorly connected    IV-B: flat, connected, cka >= cka_threshold, else IV-A

A cell whose models all diverged is `diverged`; one missing a metric the rule needs
(say mc with a single seed) is `undetermined`. `margin` is the distance, in units of each
metric's std over seeds, from the nearest boundary the decision used, so a reader sees
which cells sit close to one.
"""

from __future__ import annotations

import math

import pandas as pd

PHASES = ("I", "II", "III", "IV-A", "IV-B")
STATES = ("diverged", "undetermined")
REQUIRED = ("load", "temperature", "train_loss", "mc", "cka")


def classify_row(train_loss: float, mc: float, cka: float, *, train_loss_threshold: float,
                 mc_threshold: float, cka_threshold: float) -> str:
    if not _finite(train_loss) or not _finite(mc):
        return "undetermined"
    sharp = train_loss > train_loss_threshold
    if mc < -mc_threshold:
        return "I" if sharp else "III"
    if sharp:
        return "II"
    if not _finite(cka):
        return "undetermined"
    return "IV-B" if cka >= cka_threshold else "IV-A"


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _margin(value, threshold, std):
    if not (_finite(value) and _finite(std)) or std <= 0:
        return math.nan
    return abs(value - threshold) / std


def classify(table: pd.DataFrame, *, train_loss_threshold: float, mc_threshold: float,
             cka_threshold: float) -> pd.DataFrame:
    """phases.csv: load, temperature, phase, plus the axis names and boundary margins."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"metrics table: missing column(s) {', '.join(missing)}; "
                         f"needs {', '.join(REQUIRED)}")
    rows = []
    for r in table.to_dict("records"):
        diverged = r.get("n_models") and r.get("n_diverged") == r.get("n_models")
        phase = "diverged" if diverged else classify_row(
            r["train_loss"], r["mc"], r["cka"], train_loss_threshold=train_loss_threshold,
            mc_threshold=mc_threshold, cka_threshold=cka_threshold)
        margins = [_margin(r["train_loss"], train_loss_threshold, r.get("train_loss_std")),
                   _margin(r["mc"], -mc_threshold, r.get("mc_std"))]
        if phase.startswith("IV"):
            margins.append(_margin(r["cka"], cka_threshold, r.get("cka_std")))
        finite = [m for m in margins if _finite(m)]
        row = {"load": r["load"], "temperature": r["temperature"], "phase": phase,
               "margin_std": min(finite) if finite else math.nan}
        for extra in ("load_param", "temperature_param", "cell", "test_acc", "train_loss",
                      "mc", "cka"):
            if extra in r:
                row[extra] = r[extra]
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(phases: pd.DataFrame, metrics: pd.DataFrame | None = None) -> dict:
    """summary.json: cells per phase and where the best test accuracy lies."""
    counts = {p: int((phases["phase"] == p).sum()) for p in PHASES + STATES}
    out = {"cells": len(phases), "phases": counts}
    if "test_acc" in phases.columns and phases["test_acc"].notna().any():
        best = phases.loc[phases["test_acc"].idxmax()]
        out["best_test_acc"] = float(best["test_acc"])
        out["best_test_acc_phase"] = str(best["phase"])
        out["best_cell"] = {"load": _num(best["load"]), "temperature": _num(best["temperature"])}
        for p in PHASES:
            sel = phases.loc[phases["phase"] == p, "test_acc"].dropna()
            if len(sel):
                out.setdefault("mean_test_acc_by_phase", {})[p] = float(sel.mean())
    if metrics is not None:
        for c in ("train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "cka", "l2"):
            if c in metrics.columns and metrics[c].notna().any():
                out.setdefault("grid_mean", {})[c] = float(metrics[c].mean())
    return out


def _num(v):
    v = float(v)
    return int(v) if v.is_integer() else v
