"""Parallel workers on the default grid: train-grid with 1 and with 2 local workers.

    python benchmarks/bench_grid.py

In a temporary copy of the project: the prepared data (dvc repro prepare-noisy-data), then
the default grid's training alone, once with `executor.workers: 1` (one process with every
core) and once with 2 (one single-threaded process per core), each with a fresh cell
store. This is what `executor.workers: auto` rests on. The whole default run and one more
load value are bench_incremental.py --default.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import machine
from project import edit_params, make_project, sh


def main():
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        sh([sys.executable, "-m", "dvc", "repro", "-q", "prepare-noisy-data"], proj)
        times = {}
        for workers in (1, 2):
            def edit(params, workers=workers):
                params["executor"]["workers"] = workers
                params["store"]["path"] = f".cells-w{workers}"
            params = edit_params(proj, edit)
            times[workers] = sh([sys.executable, "stages/train_grid.py", "--params",
                                 "params.yaml", "--data", "data/prepared", "--out",
                                 f"models-w{workers}"], proj)
        g = params["grid"]
        n = len(g["load"]["values"]) * len(g["temperature"]["values"])
        print(f"train-grid, default grid ({n} cells x {g['seeds']} seeds): 1 worker "
              f"{times[1]:.1f} s, 2 workers {times[2]:.1f} s ({times[1] / times[2]:.2f}x)")


if __name__ == "__main__":
    main()
