"""The studies the README offers, each one command, timed, with the paper's findings as
`dvc exp show` sets them side by side.

    python benchmarks/bench_studies.py [--only default noise]

In a temporary copy of the project (fresh git repo, empty cell store): `dvc repro` on the
shipped params.yaml, then each study as the experiment a user runs (`dvc exp run -S ...`).
For each: its wall time, the phases, and each finding's verdict (reports/findings.json) with
its headline number; then the verdicts of all of them in one table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_taxonomy import describe
from common import machine
from project import commit, env_for, make_project, repro

# name -> (what it is, the -S overrides of `dvc exp run`); "default" is `dvc repro`
STUDIES = {
    "default": ("the shipped params.yaml", []),
    "noise": ("Fig. 4: 20% label noise on the default axes, 100 epochs so that wide models "
              "fit the noisy labels", ["noise=0.2", "train.max_epochs=100"]),
    "noise-load": ("Fig. 8: label noise as the load axis, width 32",
                   ["grid.load.param=noise", "grid.load.values=[0.0,0.05,0.1,0.2,0.4]",
                    "model.width=32"]),
    "data-load": ("Figs. 6-7: the data fraction as the load axis, width 32, short last "
                  "batches dropped (a batch of 4 at fraction 0.2 would keep the loss up)",
                  ["grid.load.param=subset", "grid.load.values=[0.1,0.2,0.4,0.7,1.0]",
                   "model.width=32", "train.drop_last=true"]),
}


def command(name: str) -> str:
    sets = STUDIES[name][1]
    return "dvc repro" if not sets else "dvc exp run " + " ".join(f"-S '{s}'" for s in sets)


def run_study(proj: Path, name: str) -> float:
    if name == "default":
        return repro(proj)
    args = [sys.executable, "-m", "dvc", "exp", "run", "-n", name]
    for s in STUDIES[name][1]:
        args += ["-S", s]
    t0 = time.perf_counter()
    res = subprocess.run(args, cwd=proj, env=env_for(proj), capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def verdicts(found: dict) -> dict:
    out = {}
    for key in sorted(found, key=lambda k: int(k[1:])):
        f = found[key]
        number = next((f"{v:.3g}" for k, v in f.items() if k not in ("verdict", "confident")),
                      "")
        sure = "" if f.get("confident", True) else " (within noise)"
        out[key] = f"{f['verdict']}{sure} {number}".strip()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    args = ap.parse_args()
    print(machine())
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        for name in args.only:
            seconds = run_study(proj, name)
            print(f"\n## {name}: {STUDIES[name][0]}\n`{command(name)}`: {seconds:.0f} s")
            if name != "default":  # the experiment's results, into the workspace to read
                subprocess.run([sys.executable, "-m", "dvc", "exp", "apply", name], cwd=proj,
                               env=env_for(proj), capture_output=True, check=True)
            describe(proj)
            table[name] = verdicts(json.loads((proj / "reports/findings.json").read_text()))
            if name == "default":  # the experiments start from it
                commit(proj, "default run")
            else:
                subprocess.run(["git", "checkout", "-q", "--", "."], cwd=proj, check=True)
                subprocess.run([sys.executable, "-m", "dvc", "checkout", "-q"], cwd=proj,
                               env=env_for(proj), capture_output=True)
    print("\n## The findings side by side (reports/findings.json of each)\n")
    names = list(table)
    print("| finding | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key in table[names[0]]:
        print(f"| {key} | " + " | ".join(table[n].get(key, "") for n in names) + " |")


if __name__ == "__main__":
    main()
