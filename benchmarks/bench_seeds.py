"""Does the default study survive another seed? Wall time, the goals of the default, and
the phases cell by cell against `-S seed=1` (other split, other models, other curves).

    python benchmarks/bench_seeds.py [--seeds 0 1]

In a temporary copy of the project (fresh git repo, empty cell store), `dvc repro` on the
shipped params.yaml, timed, then again with each other seed. For each run: the phase counts,
where the phases sit (mean log10 load and temperature of their cells), IV-B's lead over IV-A
in standard errors (summary.json: iv_b_lead_over_iv_a), the share of cells flagged boundary;
then the share of cells in the same phase as the first seed's, and the best phase again;
and the same with the run labelled by the first seed's thresholds (what
`-S phase.thresholds_from=thresholds/default.json` does), its metrics table reclassified.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from bench_taxonomy import describe
from common import machine
from project import edit_params, make_project, repro_stages

from landscape_taxonomy.report import stages as report

PHASES = ("I", "II", "III", "IV-A", "IV-B")


def layout(ph: pd.DataFrame) -> dict:
    """Per phase, the mean log10 load and temperature of its cells."""
    out = {}
    for p in PHASES:
        sel = ph[ph["phase"] == p]
        if len(sel):
            out[p] = (float(np.log10(sel["load"]).mean()),
                      float(np.log10(sel["temperature"]).mean()))
    return out


def goals(proj: Path) -> dict:
    ph = pd.read_csv(proj / "reports/phases.csv")
    s = json.loads((proj / "reports/summary.json").read_text())
    lay = layout(ph)
    lead = s.get("iv_b_lead_over_iv_a") or {}
    counts = s["phases"]
    hottest = max(lay, key=lambda p: lay[p][1]) if lay else None
    res = {
        "every phase on >= 3 cells": all(counts.get(p, 0) >= 3 for p in PHASES),
        "I < III < IV along load": all(p in lay for p in ("I", "III", "IV-A", "IV-B"))
        and lay["I"][0] < lay["III"][0] < min(lay["IV-A"][0], lay["IV-B"][0]),
        "II the hottest": hottest == "II",
        "IV-B hotter than IV-A": "IV-B" in lay and "IV-A" in lay
        and lay["IV-B"][1] > lay["IV-A"][1],
        "IV-B most accurate": s.get("best_mean_test_acc_phase") == "IV-B",
        "IV-B lead >= 2 SE": (lead.get("lead_in_se") or 0) >= 2,
        "<= 15% boundary": s["boundary_cells"] <= 0.15 * s["cells"],
    }
    print("where the phases sit (mean log10 load, log10 temperature):",
          {p: (round(a, 2), round(b, 2)) for p, (a, b) in lay.items()})
    if lead:
        print(f"IV-B - IV-A = {lead['lead']:+.4f} test accuracy, SE {lead.get('se', np.nan):.4f}"
              f" ({lead.get('lead_in_se', np.nan):.2f} SE)")
    print(f"boundary cells: {s['boundary_cells']} of {s['cells']}")
    for k, ok in res.items():
        print(f"  {'met' if ok else 'NOT met'}: {k}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        first = None
        for seed in args.seeds:
            edit_params(proj, lambda p, s=seed: p.update(seed=s))
            total, stages = repro_stages(proj)
            shown = ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
            print(f"\n## seed {seed}: dvc repro {total:.0f} s ({shown})")
            ph = describe(proj)
            goals(proj)
            if first is None:
                first = ph
                baseline = Path(tmp) / "first_summary.json"
                baseline.write_text((proj / "reports/summary.json").read_text())
                continue
            kept, n, moved = against(first, ph)
            print(f"cells in the same phase as seed {args.seeds[0]}: {kept} of {n} "
                  f"({kept / n:.0%})")
            show(moved)
            print(f"labelled with seed {args.seeds[0]}'s thresholds:")
            same_thresholds(proj, first, baseline, Path(tmp))


def same_thresholds(proj: Path, first: pd.DataFrame, baseline: Path, tmp: Path) -> None:
    """The run's metrics table classified with the first run's thresholds: cells kept,
    boundary cells, IV-B's lead."""
    out, summary = tmp / "phases.csv", tmp / "summary.json"
    ph = report.classify(proj / "reports/metrics.csv", out, summary, thresholds_from=baseline,
                         cells_dir=proj / "reports/cells", warn=print)
    s = json.loads(summary.read_text())
    kept, n, moved = against(first, ph)
    lead = s.get("iv_b_lead_over_iv_a") or {}
    print(f"  cells in the same phase: {kept} of {n}; boundary {s['boundary_cells']} of "
          f"{s['cells']}; phases {' / '.join(str(s['phases'].get(p, 0)) for p in PHASES)}; best "
          f"{s.get('best_mean_test_acc_phase')}, IV-B lead {lead.get('lead_in_se', np.nan):.1f} SE")
    show(moved)


def against(first: pd.DataFrame, ph: pd.DataFrame) -> tuple[int, int, pd.DataFrame]:
    """(cells in the same phase as in `first`, cells compared, the cells that moved)."""
    both = first.merge(ph, on=["load", "temperature"], suffixes=("_0", ""))
    same = both["phase_0"] == both["phase"]
    return int(same.sum()), len(both), both.loc[~same, ["load", "temperature", "phase_0", "phase"]]


def show(moved: pd.DataFrame) -> None:
    if len(moved):
        print(moved.to_string(index=False))


if __name__ == "__main__":
    main()
