"""Phase boundaries read off the data (`auto`), as the paper reads them off its figures.

The paper gives no numbers. Each boundary here is found from the table itself:

    train loss  two-group split (Otsu) of log10 train loss over all cells: sharp vs flat.
                The paper's sharp/flat transition is a more than tenfold fall in training
                loss; the fold between the two groups' geometric means is reported.
    mc          the "≈ 0" band: z x the median spread of mc over seed pairs (`mc_std`, cells
                with at least 2 curve pairs) among the flat cells, each spread at least
                mc's resolution, one training example (100 / n_train points), where the
                table has n_train. mc is a percentage of
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

A number given for a threshold is used as it is. A threshold left at `auto` takes the value
of a thresholds file where one is given (`phase.thresholds_from`: a summary.json of an earlier
run, or {"train_loss": x, "mc": y, "cka": z}), so that the same models keep their phase when
the grid around them changes; `baseline` reads it. `resolve` returns each threshold with how
it was found, for summary.json.

An auto split can be degenerate on a grid, and `problems` says where, for the warnings, the
summary's "warnings" and phases.csv's `flag` column: groups less than tenfold apart in train
loss (sharp/flat means nothing there), an mc band from a fallback, too few flat, connected
cells to split by CKA (IV cells undetermined), a split group of fewer than MIN_GROUP cells.
Thresholds from a file or given as numbers are what the user chose, and raise none of these.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .phases import PHASES

MC_NOISE_Z = 2.0  # the band is ±2 pair-to-pair standard deviations of mc
MIN_SPLIT = 4  # fewer cells than this cannot be split into two groups with any confidence
MIN_GROUP = 2  # a split group of fewer cells than this is an outlier, not a phase
KEYS = ("train_loss", "mc", "cka")
# phases.csv's `flag` for the cells an auto threshold's problem touches
FLAGS = {"train_loss": "train_loss_split", "mc": "mc_band", "cka": "cka_split"}
# what a thresholds file's value must be, as params.yaml's phase: section allows
ALLOWED = {"train_loss": (lambda v: v > 0, "a number > 0"),
           "mc": (lambda v: v >= 0, "a number >= 0"),
           "cka": (lambda v: 0 <= v <= 1, "a number in [0, 1]")}


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
        raise ConfigError(f"phase.train_loss_threshold: auto needs at least {MIN_SPLIT} cells "
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
        if "n_train" in table.columns:
            # mc counts training examples: it cannot resolve less than one of them, 100 /
            # n_train points. Two pairs that agree exactly (often 0 and 0, both connected)
            # measured a spread of at most that, not none.
            resolution = 100.0 / pd.to_numeric(table["n_train"], errors="coerce")
            floored = np.isfinite(std) & np.isfinite(resolution)
            std = std.where(~floored, np.maximum(std, resolution))
            ok = np.isfinite(std) & (std > 0)
        if "n_curve_pairs" in table.columns:
            ok &= pd.to_numeric(table["n_curve_pairs"], errors="coerce") >= 2
        among, fallback, flat_with_spread = "flat cells", {}, int((ok & flat).sum())
        if flat_with_spread >= MIN_SPLIT:
            ok &= flat
        else:
            among = f"all cells (fewer than {MIN_SPLIT} flat cells have a spread)"
            fallback = {"fallback": "all_cells", "flat_cells_with_spread": flat_with_spread}
        if ok.any():
            sigma = float(std[ok].median())
            return Threshold(MC_NOISE_Z * sigma,
                             f"{MC_NOISE_Z:g} x median spread of mc over seed pairs, {among}",
                             {"median_mc_std": sigma, "cells": int(ok.sum()), **fallback})
    depth = _finite(-pd.to_numeric(table.loc[flat, "mc"], errors="coerce")).clip(lower=0)
    if depth.nunique() < MIN_SPLIT:
        raise ConfigError("phase.mc_threshold: auto needs an mc_std column (mc's spread over "
                         f"seed pairs) or at least {MIN_SPLIT} flat cells with distinct mc; "
                         "give a number")
    cut, d = two_group_split(np.log1p(depth))
    return Threshold(float(np.expm1(cut)),
                     "no mc spread in the table: two-group split of the flat cells' barrier "
                     "depth log(1 + max(-mc, 0))",
                     {"cells_connected": d["n_low"], "cells_barrier": d["n_high"],
                      "fallback": "barrier_depth"})


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


def resolve(table: pd.DataFrame, *, train_loss="auto", mc="auto", cka="auto",
            baseline: dict | None = None) -> dict:
    """{'train_loss': Threshold, 'mc': ..., 'cka': ...}: given numbers as they are, `auto`
    ones from `baseline` (a thresholds file's, see `baseline`) where it has them, else found
    from the table (in this order, since each later split uses the earlier)."""
    baseline = baseline or {}

    def pick(key, value, find):
        if value != "auto":
            return Threshold(float(value), "given")
        return baseline[key] if key in baseline else find()
    tl = pick("train_loss", train_loss, lambda: auto_train_loss(table))
    m = pick("mc", mc, lambda: auto_mc(table, tl.value))
    c = pick("cka", cka, lambda: auto_cka(table, tl.value, m.value))
    return {"train_loss": tl, "mc": m, "cka": c}


# -- thresholds files --------------------------------------------------------------------

def read_file(path: str | Path, key: str = "phase.thresholds_from") -> dict:
    """A thresholds file's entries, {name: (value, method or None)} for each of KEYS it has:
    a summary.json classify-phase wrote (its "thresholds" block, each {"value": ...}) or a
    plain {"train_loss": x, "mc": y, "cka": z} (as `landscape-taxonomy thresholds` writes
    it, with "methods"). A file that cannot be read is a one-line ConfigError naming `key`."""
    where = f"{key}: {path}"
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a folder, not a JSON file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot be read ({getattr(e, 'strerror', None) or e})") \
            from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must hold a JSON object (a summary.json, or "
                          '{"train_loss": x, "mc": y, "cka": z}), got a '
                          f"{type(doc).__name__}")
    block = doc["thresholds"] if isinstance(doc.get("thresholds"), dict) else doc
    methods = doc.get("methods") if isinstance(doc.get("methods"), dict) else {}
    out = {}
    for name in KEYS:
        if name not in block:
            continue
        entry = block[name]
        if isinstance(entry, dict):
            out[name] = (entry.get("value"), entry.get("method"))
        else:
            out[name] = (entry, methods.get(name))
    return out


def baseline(path: str | Path, needed=KEYS, key: str = "phase.thresholds_from") -> dict:
    """{name: Threshold} from a thresholds file for each threshold in `needed` (those left
    at auto), method "from <path>". A missing or unusable value is a one-line ConfigError
    naming `key` and the file: it is raised before any table is read."""
    entries = read_file(path, key)
    where = f"{key}: {path}"
    out = {}
    for name in needed:
        why, fix = ("", "a thresholds file holds all three")
        if key.startswith("phase."):
            why, fix = (f" (phase.{name}_threshold is auto)",
                        f"give phase.{name}_threshold a number")
        if name not in entries:
            raise ConfigError(f"{where} has no {name} threshold{why}; {fix}")
        value, method = entries[name]
        if value is None:
            raise ConfigError(f"{where} has no value for {name} (null: the run it comes from "
                              f"found none); {fix}")
        ok, allowed = ALLOWED[name]
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and ok(value)):
            raise ConfigError(f"{where}: {name} must be {allowed}, got {value!r}")
        out[name] = Threshold(float(value), f"from {path}",
                              {"method_there": method} if isinstance(method, str) else {})
    return out


def export(path: str | Path, key: str = "thresholds") -> dict:
    """What `landscape-taxonomy thresholds` writes: the three values of a summary.json (or
    thresholds file), where they came from, and the warnings that run had (if any)."""
    th = baseline(path, KEYS, key)
    doc = json.loads(Path(path).read_text())
    warnings = doc.get("warnings") if isinstance(doc.get("warnings"), list) else []
    return {**{k: t.value for k, t in th.items()}, "from": str(path),
            "methods": {k: t.details.get("method_there") for k, t in th.items()},
            "warnings": [w for w in warnings if isinstance(w, str)]}


# -- degenerate auto splits --------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    key: str  # train_loss, mc or cka
    message: str  # the one warning line
    cells: np.ndarray  # bool per table row: the cells whose phase it touches

    @property
    def flag(self) -> str:
        return FLAGS[self.key]


def is_auto(t: Threshold) -> bool:
    return t.method != "given" and not t.method.startswith("from ")


def _warn(key: str, text: str) -> str:
    return (f"warning: phase.{key}_threshold auto: {text}; set a number or "
            "phase.thresholds_from")


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def problems(table: pd.DataFrame, th: dict, phase) -> list[Problem]:
    """Each degenerate or impossible auto split of `th` (resolve's) on this table, with the
    cells it touches; `phase` is each table row's phase (phases.classify's column)."""
    phase = pd.Series(np.asarray(phase, dtype=object))
    decided = phase.isin(PHASES).to_numpy()
    loss = pd.to_numeric(table["train_loss"], errors="coerce").to_numpy(dtype=float)
    mc = pd.to_numeric(table["mc"], errors="coerce").to_numpy(dtype=float)
    cka = pd.to_numeric(table["cka"], errors="coerce").to_numpy(dtype=float)
    tl, band = th["train_loss"].value, th["mc"].value
    with np.errstate(invalid="ignore"):
        flat = np.isfinite(loss) & (loss <= tl)
        connected = np.isfinite(mc) & (mc >= -band)
    out = []

    def small_group(key, counts: dict, sides: dict):
        """(d): a split group of fewer than MIN_GROUP cells; `sides`: each group's cells."""
        for group, n in counts.items():
            if n < MIN_GROUP:
                others = sum(counts.values()) - n
                out.append(Problem(key, _warn(key, f"the split leaves {_cells(n)} {group} "
                                                   f"against {others}, and a group of "
                                                   f"{_cells(n)} is an outlier, not a phase"),
                                   sides[group]))

    t = th["train_loss"]
    if is_auto(t):
        d = t.details
        if not d.get("tenfold", True):
            out.append(Problem("train_loss", _warn(
                "train_loss", f"the two groups are only {d['fold_between_groups']:.2g}x apart "
                              "(no tenfold fall); sharp/flat is not meaningful on this grid"),
                decided))
        with np.errstate(invalid="ignore"):
            split = np.isfinite(loss) & (loss > 0)
            small_group("train_loss", {"flat": d["cells_flat"], "sharp": d["cells_sharp"]},
                        {"flat": split & (loss <= tl), "sharp": split & (loss > tl)})
    m = th["mc"]
    if is_auto(m):
        d = m.details
        if d.get("fallback") == "all_cells":
            out.append(Problem("mc", _warn(
                "mc", f"only {d['flat_cells_with_spread']} flat cells have mc's spread over "
                      f"seed pairs (the band needs {MIN_SPLIT}), so it is {MC_NOISE_Z:g} x the "
                      "median spread of all cells, which models that cannot fit widen"),
                decided))
        elif d.get("fallback") == "barrier_depth":
            out.append(Problem("mc", _warn(
                "mc", "no spread of mc over seed pairs in the table (mc_std with 2 or more "
                      "curve pairs), so the band is a two-group split of the flat cells' "
                      "barrier depths, not a measured noise band"), decided))
            with np.errstate(invalid="ignore"):
                small_group("mc", {"connected": d["cells_connected"],
                                   "with a barrier": d["cells_barrier"]},
                            {"connected": flat & connected,
                             "with a barrier": flat & np.isfinite(mc) & ~connected})
    c = th["cka"]
    if is_auto(c):
        d = c.details
        if not math.isfinite(c.value):
            stuck = ((phase == "undetermined").to_numpy() & flat & connected
                     & np.isfinite(cka))
            if stuck.any():
                out.append(Problem("cka", _warn(
                    "cka", f"only {_cells(d['cells'])} flat and well-connected, too few to "
                           f"split into IV-A and IV-B (needs {MIN_SPLIT}), so "
                           f"{_cells(int(stuck.sum()))} stay undetermined"), stuck))
        else:
            small_group("cka", {"in IV-B": d["cells_iv_b"], "in IV-A": d["cells_iv_a"]},
                        {"in IV-B": (phase == "IV-B").to_numpy(),
                         "in IV-A": (phase == "IV-A").to_numpy()})
    return out


def flag_column(found: list[Problem], n: int) -> list[str]:
    """phases.csv's `flag`: per cell, the flags of the problems touching it (';'-joined)."""
    flags = [[] for _ in range(n)]
    for p in found:
        for i in np.flatnonzero(p.cells):
            if p.flag not in flags[i]:
                flags[i].append(p.flag)
    return [";".join(f) for f in flags]
