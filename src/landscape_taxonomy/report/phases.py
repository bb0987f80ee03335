"""The paper's taxonomy applied to a metrics table.

    sharp  = train_loss > train_loss_threshold         (high loss, large Hessian)
    poorly connected = mc < -mc_threshold               (a barrier on the curve)
    I: sharp, poorly connected     II: sharp, connected (mc ≈ 0 or > 0)
    III: flat, poorly connected    IV-B: flat, connected, cka >= cka_threshold, else IV-A

The thresholds are numbers or `auto` (found from the table: thresholds.py). A cell whose
models all diverged is `diverged`; one missing a metric the rule needs (say mc with a single
seed) is `undetermined`. `phase_margin` is the distance, in units of the metric's spread
over seeds or pairs, from the nearest boundary the decision used; a cell within one spread
of it is flagged `boundary`: its phase is what the means say, not what the noise allows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import TableError

PHASES = ("I", "II", "III", "IV-A", "IV-B")
STATES = ("diverged", "undetermined")
REQUIRED = ("load", "temperature", "train_loss", "mc", "cka")
# Metrics whose rank correlation with test accuracy the summary reports (the paper's
# question: which landscape metric predicts generalization). Spearman's rho is the same
# for a metric and its log, so log λmax and log trace are λmax and trace here.
PREDICTORS = ("cka", "hessian_top", "hessian_trace", "train_loss", "mc", "l2")


def classify_row(train_loss: float, mc: float, cka: float, *, train_loss_threshold: float,
                 mc_threshold: float, cka_threshold: float) -> str:
    if not _finite(train_loss) or not _finite(mc):
        return "undetermined"
    sharp = train_loss > train_loss_threshold
    if mc < -mc_threshold:
        return "I" if sharp else "III"
    if sharp:
        return "II"
    if not _finite(cka) or not _finite(cka_threshold):
        return "undetermined"
    return "IV-B" if cka >= cka_threshold else "IV-A"


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _margin(value, threshold, std):
    if not (_finite(value) and _finite(std) and _finite(threshold)) or float(std) <= 0:
        return math.nan
    return abs(float(value) - threshold) / float(std)


def classify(table: pd.DataFrame, *, train_loss_threshold: float, mc_threshold: float,
             cka_threshold: float) -> pd.DataFrame:
    """phases.csv: load, temperature, phase, phase_margin, boundary, plus context columns."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise TableError(f"metrics table: missing column(s) {', '.join(missing)}; "
                         f"needs {', '.join(REQUIRED)}")
    th = {"train_loss_threshold": train_loss_threshold, "mc_threshold": mc_threshold,
          "cka_threshold": cka_threshold}
    rows = []
    for r in table.to_dict("records"):
        n_models = r.get("n_models")
        diverged = _finite(n_models) and n_models > 0 and r.get("n_diverged") == n_models
        phase = "diverged" if diverged else classify_row(r["train_loss"], r["mc"], r["cka"],
                                                         **th)
        margins = {"train_loss": _margin(r["train_loss"], train_loss_threshold,
                                         r.get("train_loss_std")),
                   "mc": _margin(r["mc"], -mc_threshold, r.get("mc_std"))}
        if phase.startswith("IV"):
            margins["cka"] = _margin(r["cka"], cka_threshold, r.get("cka_std"))
        finite = {k: m for k, m in margins.items() if _finite(m)}
        nearest = min(finite, key=finite.get) if finite else ""
        margin = finite[nearest] if finite else math.nan
        row = {"load": r["load"], "temperature": r["temperature"], "phase": phase,
               "phase_margin": margin, "margin_metric": nearest,
               "boundary": bool(phase in PHASES and _finite(margin) and margin < 1.0)}
        for extra in ("load_param", "temperature_param", "cell", "test_acc", "train_loss",
                      "mc", "cka"):
            if extra in r:
                row[extra] = r[extra]
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(phases: pd.DataFrame, metrics: pd.DataFrame | None = None,
              hits: dict | None = None) -> dict:
    """summary.json: cells per phase, test accuracy per phase with its standard error,
    IV-B's lead over IV-A, where the best cell lies, and how well each metric ranks the
    cells' test accuracy. `hits`: accuracy_parts'."""
    counts = {p: int((phases["phase"] == p).sum()) for p in PHASES + STATES}
    out = {"cells": len(phases), "phases": counts,
           "boundary_cells": int(phases.get("boundary", pd.Series(dtype=bool)).sum())}
    if "test_acc" in phases.columns and phases["test_acc"].notna().any():
        best = phases.loc[phases["test_acc"].idxmax()]
        out["best_test_acc"] = float(best["test_acc"])
        out["best_test_acc_phase"] = str(best["phase"])
        out["best_cell"] = {"load": _num(best["load"]), "temperature": _num(best["temperature"])}
        by_phase, parts = {}, {}
        for p in PHASES:
            sel = phases.loc[phases["phase"] == p, "test_acc"].dropna()
            if len(sel):
                by_phase[p] = {"mean": float(sel.mean()),
                               "std": float(sel.std()) if len(sel) > 1 else 0.0,
                               "cells": int(len(sel))}
                parts[p] = accuracy_parts(phases[phases["phase"] == p], metrics, hits)
                if parts[p] is not None:
                    by_phase[p].update(
                        se=math.sqrt(parts[p]["var_seeds"] + parts[p]["var_test"]),
                        se_seeds=math.sqrt(parts[p]["var_seeds"]),
                        se_test=math.sqrt(parts[p]["var_test"]), test_set=parts[p]["test_set"])
        out["test_acc_by_phase"] = by_phase
        if by_phase:
            out["best_mean_test_acc_phase"] = max(by_phase, key=lambda p: by_phase[p]["mean"])
            out["iv_b_lead_over_iv_a"] = lead(by_phase, "IV-B", "IV-A", parts)
    if metrics is not None:
        out["spearman_with_test_acc"] = spearman_with_test_acc(metrics)
        out["hessian_trace_by_phase"] = trace_by_phase(phases, metrics)
        for c in ("train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "cka", "l2"):
            if c in metrics.columns and metrics[c].notna().any():
                out.setdefault("grid_mean", {})[c] = float(metrics[c].mean())
    return out


def accuracy_parts(cells: pd.DataFrame, metrics: pd.DataFrame | None,
                   hits: dict | None = None) -> dict | None:
    """The noise in a phase's mean test accuracy (the mean over its cells of each cell's
    mean over seeds), as variances of that mean:
      seeds     each cell's spread over its models, test_acc_std² / models; the mean of
                independent cells: the sum over cells / cells²;
      test set  the test signals are a sample too. With `hits` ({(load, temperature): the
                share of a cell's models right on each test sample}), Var_x(r(x)) / n_test
                for the phase's share r(x) (its cells' mean), exact; without, the binomial
                p(1 - p) / n_test, once for the phase (every cell scores the same samples,
                so this part does not shrink with more cells).
    None when the table lacks the seeds' spread. `rate` is r(x) where hits are known."""
    if metrics is None or "test_acc_std" not in metrics.columns:
        return None
    cols = [c for c in ("test_acc_std", "n_models", "n_diverged", "n_test")
            if c in metrics.columns]
    t = cells[["load", "temperature", "test_acc"]].merge(
        metrics[["load", "temperature", *cols]], on=["load", "temperature"]).dropna(
        subset=["test_acc", "test_acc_std"])
    if not len(t):
        return None
    models = t["n_models"] - t.get("n_diverged", 0) if "n_models" in t else 1
    var_seeds = float((t["test_acc_std"] ** 2 / np.maximum(models, 1)).sum()) / len(t) ** 2
    rate, var_test, how = None, 0.0, "none"
    found = [(hits or {}).get((float(a), float(b))) for a, b in zip(t["load"], t["temperature"])]
    if found and all(r is not None for r in found):
        rate = np.mean(found, axis=0)
        var_test, how = float(rate.var() / len(rate)), "per test sample"
    elif "n_test" in t and t["n_test"].notna().all():
        p = float(t["test_acc"].mean())
        var_test, how = p * (1 - p) / float(t["n_test"].min()), "binomial"
    return {"var_seeds": var_seeds, "var_test": var_test, "test_set": how, "rate": rate}


def accuracy_se(cells: pd.DataFrame, metrics: pd.DataFrame | None,
                hits: dict | None = None) -> float | None:
    """Standard error of a phase's mean test accuracy (accuracy_parts says from what)."""
    parts = accuracy_parts(cells, metrics, hits)
    return None if parts is None else float(math.sqrt(parts["var_seeds"] + parts["var_test"]))


def lead(by_phase: dict, first: str, second: str, parts: dict | None = None) -> dict | None:
    """How far `first`'s mean test accuracy is ahead of `second`'s, and that lead in units
    of its standard error. With both phases' per-sample shares (`parts`, accuracy_parts'),
    the test set's part is paired: Var_x(r1(x) - r2(x)) / n_test, the two scored on the
    same samples (mostly the same hits and misses); otherwise the two SEs in quadrature."""
    a, b = by_phase.get(first), by_phase.get(second)
    if a is None or b is None:
        return None
    out = {"lead": a["mean"] - b["mean"]}
    pa, pb = (parts or {}).get(first), (parts or {}).get(second)
    if pa is not None and pb is not None and pa["rate"] is not None \
            and pb["rate"] is not None:
        d = pa["rate"] - pb["rate"]
        out["se"] = math.sqrt(pa["var_seeds"] + pb["var_seeds"] + d.var() / len(d))
        out["test_set"] = "paired per test sample"
    elif "se" in a and "se" in b:
        out["se"] = math.hypot(a["se"], b["se"])
        out["test_set"] = "unpaired (conservative)"
    if "se" in out:
        out["lead_in_se"] = out["lead"] / out["se"] if out["se"] > 0 else math.nan
    return out


def trace_by_phase(phases: pd.DataFrame, metrics: pd.DataFrame) -> dict:
    """Per phase: mean Hessian trace over its cells, their spread (std), and the probe error
    bar of that mean (SE from each cell's hessian_trace_se), with the mean relative SE."""
    if "hessian_trace" not in metrics.columns:
        return {}
    cols = ["load", "temperature", "hessian_trace"] + (
        ["hessian_trace_se"] if "hessian_trace_se" in metrics.columns else [])
    t = phases[["load", "temperature", "phase"]].merge(metrics[cols], on=["load", "temperature"])
    out = {}
    for p in PHASES:
        sel = t[t["phase"] == p].dropna(subset=["hessian_trace"])
        if not len(sel):
            continue
        row = {"mean": float(sel["hessian_trace"].mean()),
               "std": float(sel["hessian_trace"].std()) if len(sel) > 1 else 0.0,
               "cells": int(len(sel))}
        if "hessian_trace_se" in sel.columns and sel["hessian_trace_se"].notna().all():
            row["se"] = float(np.sqrt((sel["hessian_trace_se"] ** 2).sum()) / len(sel))
            row["mean_rel_se"] = float((sel["hessian_trace_se"] / sel["hessian_trace"].abs())
                                       .mean())
        out[p] = row
    return out


def spearman_with_test_acc(metrics: pd.DataFrame) -> dict:
    """Spearman's rho of each predictor with test accuracy over the cells that have both."""
    out = {}
    if "test_acc" not in metrics.columns:
        return out
    acc = pd.to_numeric(metrics["test_acc"], errors="coerce")
    for c in PREDICTORS:
        if c not in metrics.columns:
            continue
        v = pd.to_numeric(metrics[c], errors="coerce")
        ok = np.isfinite(v) & np.isfinite(acc)
        if ok.sum() >= 3 and v[ok].nunique() > 1 and acc[ok].nunique() > 1:
            out[c] = float(v[ok].rank().corr(acc[ok].rank()))
    return out


def _num(v):
    v = float(v)
    return int(v) if v.is_integer() else v
