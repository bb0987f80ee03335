"""The study's report: phases and summary from a metrics table, and the figures.

    classify -> reports/phases.csv, reports/summary.json, reports/correlations.csv
    plot     -> reports/figures/

These read tables only (ours or another study's) and never import torch, so the last two
stages, and `landscape-taxonomy classify` on a published table, start in a second.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..cells.io import write_csv, write_json
from ..errors import ConfigError
from . import phases, tables, thresholds

CONTRACT = ["load", "temperature", "train_loss", "train_acc", "test_loss", "test_acc",
            "hessian_top", "hessian_trace", "mc", "cka", "l2"]


# Columns read as numbers wherever a table comes from (an outside table's typo is an error).
NUMERIC = CONTRACT + [f"{c}_std" for c in CONTRACT[2:]] + ["n_models", "n_diverged",
                                                           "n_curve_pairs", "n_train", "n_test",
                                                           "phase_margin", "hessian_trace_se",
                                                           "hessian_top_residual"]


def read_table(path: Path, *, load_col: str | None = None,
               temperature_col: str | None = None, require=("load", "temperature"),
               unique: bool = True):
    return tables.read_table(path, numeric=NUMERIC, load_col=load_col,
                             temperature_col=temperature_col, require=require, unique=unique)


def classify(metrics_csv: Path, phases_csv: Path, summary_json: Path | None, *,
             train_loss_threshold="auto", mc_threshold="auto", cka_threshold="auto",
             thresholds_from: Path | None = None,
             load_col: str | None = None, temperature_col: str | None = None,
             correlations_csv: Path | None = None, cells_dir: Path | None = None,
             warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """phases.csv (with `flag`), summary.json (with "warnings") and the correlations from a
    metrics table. Thresholds left at auto take `thresholds_from`'s values where it is
    given (read before the table); `warn` gets each degenerate auto split's warning line.
    `cells_dir` (compute-metrics' reports/cells) gives each cell's per-sample test hits, for
    the phases' paired accuracy comparison."""
    _, result, summary = classified(
        metrics_csv, train_loss_threshold=train_loss_threshold, mc_threshold=mc_threshold,
        cka_threshold=cka_threshold, thresholds_from=thresholds_from, load_col=load_col,
        temperature_col=temperature_col, cells_dir=cells_dir, warn=warn)
    write_csv(phases_csv, result)
    if summary_json is not None:
        write_json(summary_json, _clean(summary))
    if correlations_csv is not None:  # the bar chart's data, for `dvc plots diff`
        corr = summary.get("spearman_with_test_acc", {})
        write_csv(correlations_csv, pd.DataFrame({"metric": list(corr),
                                                  "spearman": list(corr.values())}))
    return result


def classified(metrics_csv: Path, *, train_loss_threshold="auto", mc_threshold="auto",
               cka_threshold="auto", thresholds_from: Path | None = None,
               load_col: str | None = None, temperature_col: str | None = None,
               cells_dir: Path | None = None, warn: Callable[[str], None] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(metrics table, phases, summary) of classify, nothing written."""
    given = {"train_loss": train_loss_threshold, "mc": mc_threshold, "cka": cka_threshold}
    baseline = None
    if thresholds_from is not None:
        baseline = thresholds.baseline(thresholds_from,
                                       [k for k, v in given.items() if v == "auto"])
    table = read_table(metrics_csv, load_col=load_col, temperature_col=temperature_col,
                       require=phases.REQUIRED)
    _check_divergence(table, [k for k, v in given.items() if v == "auto"
                              and (baseline is None or k not in baseline)])
    th = thresholds.resolve(table, train_loss=train_loss_threshold, mc=mc_threshold,
                            cka=cka_threshold, baseline=baseline)
    result = phases.classify(table, train_loss_threshold=th["train_loss"].value,
                             mc_threshold=th["mc"].value, cka_threshold=th["cka"].value)
    found = thresholds.problems(table, th, result["phase"])
    result["flag"] = thresholds.flag_column(found, len(result))
    summary = phases.summarize(result, table, test_hits(cells_dir, table))
    summary["thresholds"] = {k: v.as_dict() for k, v in th.items()}
    summary["warnings"] = [p.message for p in found]
    for p in found:
        if warn is not None:
            warn(p.message)
    return table, result, summary


def _check_divergence(table: pd.DataFrame, auto: list[str]) -> None:
    """A grid whose models diverged leaves `auto` nothing to read: say that, not that a
    threshold lacks cells."""
    if not auto or not {"n_models", "n_diverged"} <= set(table.columns):
        return
    dead = (table["n_models"] > 0) & (table["n_diverged"] >= table["n_models"])
    alive = len(table) - int(dead.sum())
    if dead.any() and alive < thresholds.MIN_SPLIT:
        raise tables.TableError(
            f"every model diverged in {int(dead.sum())} of {len(table)} cells (loss "
            f"non-finite or no better than chance), so phase.{auto[0]}_threshold: auto has "
            f"{alive} cells to read; lower train.lr, or give the thresholds as numbers")


def findings(metrics_csv: Path, out_json: Path, detail_json: Path | None, *,
             phases_csv: Path | None = None, summary_json: Path | None = None,
             load_col: str | None = None, temperature_col: str | None = None,
             warn: Callable[[str], None] | None = None, **classify_kw) -> dict:
    """The paper's findings on a study (findings/): `out_json` gets each verdict and its
    headline number (the DVC metrics view), `detail_json` every statistic, interval, rule
    and reason. With `phases_csv` and `summary_json` (classify's outputs) the phases and
    thresholds are read from them; without, the table is classified first (classify_kw)."""
    from . import findings as f
    axes = {"load_col": load_col, "temperature_col": temperature_col}
    if phases_csv is not None:
        if summary_json is None:
            raise ConfigError("findings: --phases needs --summary too (the thresholds the "
                             "phases were sorted with)")
        table = read_table(metrics_csv, require=phases.REQUIRED, **axes)
        result = read_table(phases_csv, require=("load", "temperature", "phase"), **axes)
        entries = thresholds.read_file(summary_json, "--summary")
        if entries.get("train_loss", (None,))[0] is None:
            raise ConfigError(f"--summary: {summary_json} has no train_loss threshold (a "
                             "summary.json classify wrote has it)")
        summary = json.loads(Path(summary_json).read_text())
    else:
        table, result, summary = classified(metrics_csv, warn=warn, **axes, **classify_kw)
    # a grid without flat, connected cells has no cka threshold (null): no finding needs it
    th = {k: math.nan if v.get("value") is None else float(v["value"])
          for k, v in summary["thresholds"].items()}
    found = f.evaluate(table, result, th, summary)
    if detail_json is not None:
        write_json(detail_json, _clean(found))
    write_json(out_json, _clean(f.headline(found)))
    return found


def test_hits(cells_dir: Path | None, table: pd.DataFrame) -> dict | None:
    """{(load, temperature): the share of the cell's live models right on each test sample}
    from the cells' JSON (`test_hits`, metrics/cell.py), for the table's cells that have
    one; None without a folder or a `cell` column."""
    if cells_dir is None or "cell" not in table.columns:
        return None
    out = {}
    for r in table[["cell", "load", "temperature"]].itertuples(index=False):
        path = Path(cells_dir) / f"{r.cell}.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        m = res.get("metrics", {})
        live = (m.get("n_models") or 0) - (m.get("n_diverged") or 0)
        if "test_hits" not in res or live <= 0:
            continue
        counts = np.frombuffer(base64.b64decode(res["test_hits"]), dtype=np.uint8)
        out[(float(r.load), float(r.temperature))] = counts / live
    return out


def _clean(obj):
    """NaN is not JSON; DVC metrics get null instead."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def plot(metrics_csv: Path | None, phases_csv: Path | None, curves_csv: Path | None,
         out_dir: Path, *, load_col: str | None = None, temperature_col: str | None = None,
         density_csv: Path | None = None, findings_json: Path | None = None,
         summary_json: Path | None = None) -> list[Path]:
    from .figures import render_all  # altair: only the plot stage pays its import

    def opt(path, **axes):
        return read_table(path, **axes) if path is not None else None

    def rows(path):  # curves and densities: none at all is a grid's outcome, not an error
        if path is None or (Path(path).is_file()
                            and len(Path(path).read_text().splitlines()) <= 1):
            return None
        return read_table(path, require=(), unique=False)
    axes = {"load_col": load_col, "temperature_col": temperature_col}
    found = None
    if findings_json is not None:
        try:
            found = json.loads(Path(findings_json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"--findings: {findings_json}: cannot be read as JSON ({e})") \
                from None
    mc_threshold = None
    if summary_json is not None:  # the threshold the phases used, to mark on mc's heatmap
        mc_threshold = thresholds.read_file(summary_json, "--summary").get("mc", (None,))[0]
    return render_all(opt(metrics_csv, **axes), opt(phases_csv, **axes),
                      rows(curves_csv), Path(out_dir), rows(density_csv), found,
                      mc_threshold)
