"""Every benchmark, one after the other in one run, into one results file.

    python benchmarks/run_all.py                      # all of them: about 8 min on 2 cores
    python benchmarks/run_all.py --only curvature disk
    python benchmarks/run_all.py --out benchmarks/results.md

Each benchmark runs as its own process (so one's memory or threads never weigh on the
next), nothing else should run on the machine meanwhile, and its output goes verbatim
under a heading with the exact command and its wall time; the README's Measurements quote
this file. bench_speed.py needs pyhessian: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (arguments, what it answers); the order puts the short ones first
BENCHMARKS = {
    "curvature": (["bench_curvature.py"], "Hessian trace and top eigenvalue: the old and new "
                  "estimators' error against exact Hessians, and their cost; autograd vs "
                  "hand-derived products (ResNet18 on CUDA)"),
    "incremental": (["bench_incremental.py"], "2x2 grid: the full run and one more width"),
    "incremental-cnn": (["bench_incremental.py", "--arch", "cnn"],
                        "the same with the small CNN, whose cells cost more than the MLP's"),
    "disk": (["bench_disk.py"], "2x2 grid: disk held against the results' bytes"),
    "disk-large": (["bench_disk.py", "--large"],
                   "2x2 grid of wide models: disk held where the model bytes dominate"),
    "default": (["bench_incremental.py", "--default", "--estimators"], "the default study: "
                "full run by stage, peak memory, disk, one more width, and compute-metrics "
                "with each Hessian method"),
    "workers": (["bench_grid.py"], "train-grid on the default grid, 1 vs 2 workers"),
    "speed": (["bench_speed.py", "--reps", "3"], "training, Hessian and curves against the "
              "straightforward way"),
    "hessian-samples": (["bench_hessian_stability.py"], "how many points the Hessian needs"),
    "seeds": (["bench_seeds.py"], "the default study against -S seed=1: wall time, the "
              "goals, the phases cell by cell"),
    "studies": (["bench_studies.py"], "the README's studies (default, label noise, noise "
                "and data as load), each one command: time, phases, the findings' verdicts"),
}


def as_markdown(text: str) -> str:
    """Tables stay as they are; every other line becomes a paragraph of its own."""
    out, table = [], False
    for line in text.splitlines():
        row = line.startswith("|")
        if out and not (row and table):
            out.append("")
        out.append(line)
        table = row
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run just these")
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    args = ap.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    sys.path.insert(0, str(HERE))
    from common import machine

    parts = [f"# Benchmark results\n\n`python benchmarks/run_all.py"
             f"{' --only ' + ' '.join(names) if args.only else ''}`, one run: {machine()}\n"]
    failed = []
    for name in names:
        cmd, what = BENCHMARKS[name]
        shown = "python benchmarks/" + " ".join(cmd)
        print(f"== {name}: {shown}", flush=True)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=HERE.parent,
                             capture_output=True, text=True)
        secs = time.perf_counter() - t0
        text = as_markdown(res.stdout.strip())
        if res.returncode:
            failed.append(name)
            text += f"\n\nFAILED (exit {res.returncode}):\n{res.stderr.strip()[-3000:]}"
        print(text, flush=True)
        parts.append(f"## {name}: {what}\n\n`{shown}` ({secs / 60:.1f} min)\n\n{text}\n")
        args.out.write_text("\n".join(parts))  # as it goes: a stop keeps what finished
    print(f"results -> {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
