"""What one more load value costs next to the run it extends (issue 14).

    python benchmarks/bench_incremental.py             # a 2x2 grid of the default study
    python benchmarks/bench_incremental.py --default   # the default grid, plus width 3

In a temporary git + DVC copy of the project (its own cell store and DVC cache): a full
`dvc repro`, then one more value in `grid.load.values` and `dvc repro` again. Prints both
wall times, their ratio, and the new cells as a share of the full run's; what the second run costs
above that share is fixed cost (DVC, Python and torch start-ups, prepare, the figures).
The 2x2 grid keeps every default setting but the grid: widths 2 and 8 at weight decay
1e-4 and 1e-2, then width 4.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"load": [2, 8], "temperature": [0.0001, 0.01], "add": 4}


def sh(cmd, cwd) -> float:
    # The stages import the copy's package, not the installed one: the numbers are those of
    # the code copied, even while this checkout is edited.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(Path(cwd) / "src")}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - t0


def make_project(dst: Path) -> None:
    """A fresh git + DVC repository holding this project's pipeline, nothing computed."""
    skip = shutil.ignore_patterns(".venv", ".cells", "data", "models", "__pycache__",
                                  "reports", ".git", "dvc.lock", "*.egg-info", ".pytest_cache",
                                  ".ruff_cache")

    def ignore(folder, names):  # and the DVC cache and state of this checkout
        extra = {"cache", "tmp"} if Path(folder).name == ".dvc" else set()
        return set(skip(folder, names)) | (extra & set(names))
    shutil.copytree(ROOT, dst, ignore=ignore)
    sh(["git", "init", "-q"], dst)
    sh(["git", "config", "user.email", "bench@example.com"], dst)
    sh(["git", "config", "user.name", "bench"], dst)
    sh(["git", "add", "-A"], dst)
    sh(["git", "commit", "-qm", "bench"], dst)


def set_grid(proj: Path, load=None, temperature=None) -> list:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    if load is not None:
        params["grid"]["load"]["values"] = load
    if temperature is not None:
        params["grid"]["temperature"]["values"] = temperature
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params["grid"]["load"]["values"]


def measure(default: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "proj"
        make_project(proj)
        if default:
            load = set_grid(proj)
            add = 3
        else:
            load = set_grid(proj, SMALL["load"], SMALL["temperature"])
            add = SMALL["add"]
        full = sh([sys.executable, "-m", "dvc", "repro", "-q"], proj)
        sh(["git", "add", "-A"], proj)
        sh(["git", "commit", "-qm", "full run"], proj)
        set_grid(proj, sorted([*load, add]))
        more = sh([sys.executable, "-m", "dvc", "repro", "-q"], proj)
        return {"load": load, "add": add, "full": full, "more": more,
                "share": 1 / len(load)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default", action="store_true",
                    help="the default grid of params.yaml instead of the 2x2 one")
    args = ap.parse_args(argv)
    r = measure(args.default)
    grid = "default grid" if args.default else "2x2 grid"
    print(f"{grid}, load values {r['load']}: full dvc repro {r['full']:.1f} s")
    print(f"add load value {r['add']}: {r['more']:.1f} s = {r['more'] / r['full']:.0%} of the "
          f"full run (the new cells are {r['share']:.0%} of the full run's cells; target <= "
          "60% on the 2x2 grid)")


if __name__ == "__main__":
    main()
