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

import pandas as pd

from ..phases import PHASES
from .core import cell_table
from .label_noise import f5_double_descent, f6_zero_loss_hurts
from .load_axes import f7_width_connects, f8_data_similarity, f9_clean_labels_connect
from .phase_map import (
    f1_arrangement,
    f2_iv_b_best,
    f3_hessian_loss,
    f4_connectivity_not_hessian,
    f10_global_beats_local,
)

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
