"""What one more load value costs next to the run it extends (issue 14).

    python benchmarks/bench_incremental.py             # a 2x2 grid of the default study
    python benchmarks/bench_incremental.py --default   # the default grid, plus width 3
    python benchmarks/bench_incremental.py --arch cnn  # the 2x2 grid of another model

In a temporary git + DVC copy of the project (its own cell store and DVC cache): a full
`dvc repro`, then one more value in `grid.load.values` and `dvc repro` again. Prints both
wall times, their ratio and each stage's time in both runs: what the second run costs above
its new cells' share is fixed cost (DVC, Python and torch start-ups, the figures).
The 2x2 grid keeps every default setting but the grid: widths 2 and 8 at weight decay
1e-4 and 1e-2, then width 4. With --default it also prints the peak memory of the full
run, the disk it left (bench_disk.py's accounting) and, with --estimators, compute-metrics
on the same models with each Hessian method (fresh cell stores, one after the other).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from project import (
    SMALL,
    commit,
    edit_params,
    make_project,
    peak_child_mib,
    repro_stages,
    set_grid,
    sh,
)

STAGE = [sys.executable, "stages/compute_metrics.py", "--data", "data/prepared", "--models",
         "models"]


def estimator_stage(proj: Path, method: str) -> float:
    """compute-metrics on the run's models with metrics.hessian.method, fresh store."""
    name = f"params-{method}.yaml"

    def edit(params):
        params["metrics"]["hessian"]["method"] = method
        params["store"]["path"] = f".cells-{method}"
    edit_params(proj, edit, out=name)
    out = proj / f"out-{method}"
    return sh([*STAGE, "--params", name, "--out", out / "metrics.csv", "--curves",
               out / "curves.csv", "--cells", out / "cells"], proj)


def measure(default: bool, estimators: bool = False, arch: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        if arch:
            edit_params(proj, lambda params: params["model"].update(arch=arch))
        if default:
            load, add = set_grid(proj), 3
        else:
            load, add = set_grid(proj, SMALL["load"], SMALL["temperature"]), SMALL["add"]
        commit(proj, "grid")
        full, full_stages = repro_stages(proj)
        out = {"load": load, "add": add, "full": full, "full_stages": full_stages,
               "share": 1 / len(load), "peak_mib": peak_child_mib()}
        if default:
            from bench_disk import footprint
            out["disk"] = footprint(proj)
        commit(proj, "full run")
        set_grid(proj, sorted([*load, add]))
        out["more"], out["more_stages"] = repro_stages(proj)
        if estimators:
            for method in ("pyhessian", "lanczos"):
                out[f"stage_{method}"] = estimator_stage(proj, method)
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default", action="store_true",
                    help="the default grid of params.yaml instead of the 2x2 one")
    ap.add_argument("--estimators", action="store_true",
                    help="then compute-metrics with method pyhessian and lanczos (fresh stores)")
    ap.add_argument("--arch", choices=["mlp", "cnn", "resnet18"],
                    help="model.arch for the copy (default: params.yaml's)")
    args = ap.parse_args(argv)
    r = measure(args.default, args.estimators, args.arch)
    grid = ("default grid" if args.default else "2x2 grid") + (f", {args.arch}" * bool(args.arch))
    print(f"{grid}, load values {r['load']}: full dvc repro {r['full']:.1f} s "
          f"(peak memory of a stage or worker {r['peak_mib']:.0f} MiB)")
    print(f"add load value {r['add']}: {r['more']:.1f} s = {r['more'] / r['full']:.0%} of the "
          f"full run (one load value is {r['share']:.0%} of the full run's cells; target <= "
          "60% on the 2x2 grid)")
    print("| stage | full run | one more load value |\n|---|---|---|")
    for name, secs in r["full_stages"].items():
        print(f"| {name} | {secs:.1f} s | {r['more_stages'].get(name, 0.0):.1f} s |")
    if "disk" in r:
        print(r["disk"])
    if args.estimators:
        old, new = r["stage_pyhessian"], r["stage_lanczos"]
        print(f"compute-metrics alone on the {len(r['load']) + 1}-value grid's models, empty "
              f"store: method pyhessian {old:.1f} s, lanczos {new:.1f} s = {new / old:.2f}x")


if __name__ == "__main__":
    main()
