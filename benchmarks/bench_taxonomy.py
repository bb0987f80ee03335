"""The default study as a user meets it: wall time, the phases it shows, and whether mode
connectivity's sign survives a doubled curve budget.

    python benchmarks/bench_taxonomy.py [--skip-budget]

In a temporary copy of the project (fresh git repo, empty cell store): `dvc repro` on the
shipped params.yaml, timed; the phase counts, where each phase sits, the mean test
accuracy per phase and the thresholds that `auto` found. Then the curves again at twice
`metrics.curve.epochs` (the trained models come from the store) and, cell by cell, whether
mc's sign, the barrier call (mc < -threshold) and the phase stay the same.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from common import machine
from project import edit_params, make_project, repro


def describe(proj: Path) -> pd.DataFrame:
    ph = pd.read_csv(proj / "reports/phases.csv")
    s = json.loads((proj / "reports/summary.json").read_text())
    print("phases:", {k: v for k, v in s["phases"].items() if v})
    print("boundary cells (within one spread of a boundary):", s["boundary_cells"])
    for p, a in s.get("test_acc_by_phase", {}).items():
        sel = ph[ph["phase"] == p]
        cells = ", ".join(f"{r.load:g}/{r.temperature:g}" for r in sel.itertuples())
        print(f"  {p:5s} {a['cells']:2d} cells, test acc {a['mean']:.4f} ± {a['std']:.4f}  "
              f"(load/temperature: {cells})")
    print("most accurate phase (mean):", s.get("best_mean_test_acc_phase"))
    for k, t in s["thresholds"].items():
        value = "none" if t["value"] is None else f"{t['value']:.4g}"
        print(f"  threshold {k}: {value} ({t['method']})")
    print("Spearman with test acc:",
          {k: round(v, 3) for k, v in s.get("spearman_with_test_acc", {}).items()})
    print(ph.pivot(index="load", columns="temperature", values="phase")
          .sort_index(ascending=False).to_string())
    return ph


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-budget", action="store_true", help="only the default run")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        secs = repro(proj)
        print(f"default dvc repro (fresh copy, empty store): {secs:.0f} s")
        base = describe(proj)
        if args.skip_budget:
            return
        metrics = pd.read_csv(proj / "reports/metrics.csv")
        def double(params):
            params["metrics"]["curve"]["epochs"] *= 2
        epochs = edit_params(proj, double)["metrics"]["curve"]["epochs"] // 2
        secs = repro(proj)
        print(f"\ncurves at {2 * epochs} epochs instead of {epochs} (models reused): "
              f"{secs:.0f} s")
        doubled = pd.read_csv(proj / "reports/metrics.csv")
        th = json.loads((proj / "reports/summary.json").read_text())["thresholds"]["mc"]
        both = metrics.merge(doubled, on=["load", "temperature"], suffixes=("", "_2x"))
        sign = (both["mc"] > 0) == (both["mc_2x"] > 0)
        barrier = (both["mc"] < -th["value"]) == (both["mc_2x"] < -th["value"])
        print(f"mc sign unchanged in {sign.sum()} of {len(both)} cells; barrier call "
              f"(mc < -{th['value']:.3g}) unchanged in {barrier.sum()} of {len(both)}")
        moved = both.loc[~sign | ~barrier, ["load", "temperature", "mc", "mc_std", "mc_2x"]]
        if len(moved):
            print(moved.round(3).to_string(index=False))
        new = describe(proj)
        same = (base["phase"].values == new["phase"].values).sum()
        print(f"phase unchanged in {same} of {len(base)} cells")


if __name__ == "__main__":
    main()
