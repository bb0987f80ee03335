"""Cell-level reuse and parallel workers on the default grid.

    python benchmarks/bench_grid.py

In a temporary copy of the project (its own cell store): the full default `dvc repro`;
then one more load value, which should cost about that value's share of the cells; then
the grid's training alone with 1 and with 2 local workers (fresh stores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import machine

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "proj"
        shutil.copytree(ROOT, proj, ignore=shutil.ignore_patterns(
            ".venv", ".cells", "data", "models", "__pycache__", "reports", ".git", "dvc.lock"))
        sh(["git", "init", "-q"], proj)
        sh([sys.executable, "-m", "dvc", "init", "-q", "-f"], proj)
        shutil.copytree(ROOT / ".dvc" / "plots", proj / ".dvc" / "plots", dirs_exist_ok=True)
        params = yaml.safe_load((proj / "params.yaml").read_text())
        n_load = len(params["grid"]["load"]["values"])
        full = sh([sys.executable, "-m", "dvc", "repro", "-q"], proj)
        print(f"full default dvc repro ({n_load} load values): {full:.0f} s")
        params["grid"]["load"]["values"].append(3)
        (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        add = sh([sys.executable, "-m", "dvc", "repro", "-q"], proj)
        print(f"add load value 3: {add:.0f} s = {add / full:.0%} of the full run "
              f"(its share of the cells: {1 / (n_load + 1):.0%})")
        params["grid"]["load"]["values"].pop()
        for workers in (1, 2):
            params["executor"]["workers"] = workers
            params["store"]["path"] = f".cells-w{workers}"
            (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            t = sh([sys.executable, "stages/train_grid.py", "--params", "params.yaml", "--data",
                    "data/prepared", "--out", f"models-w{workers}"], proj)
            print(f"train-grid with {workers} worker(s): {t:.0f} s")


if __name__ == "__main__":
    main()
