"""A throwaway copy of this project to run DVC in: the benchmarks that time `dvc repro`.

The copy is a fresh git + DVC repository with this checkout's code, params and DVC config,
and nothing computed (no cell store, no DVC cache, no outputs). Its stages import the
copy's package (PYTHONPATH), so the numbers are those of the code copied, even while this
checkout is being edited.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# bench_incremental's and bench_disk's small grid: the default study at widths 2 and 8 x
# weight decay 1e-4 and 1e-2, then one more width
SMALL = {"load": [2, 8], "temperature": [0.0001, 0.01], "add": 4}


def sh(cmd, cwd) -> float:
    """Run a command in the copy; its wall seconds. A failure stops the benchmark with its
    output."""
    t0 = time.perf_counter()
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env_for(cwd), capture_output=True,
                         text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - t0


def env_for(proj: Path) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(Path(proj) / "src")}


def repro(proj: Path) -> float:
    return sh([sys.executable, "-m", "dvc", "repro", "-q"], proj)


def repro_stages(proj: Path) -> tuple[float, dict[str, float]]:
    """`dvc repro`: its wall seconds and each stage's, from "Running stage" to the next
    stage's start (so a stage's share of DVC's own work, its lock-file update, is in it;
    DVC's start-up before the first stage is under "dvc")."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=proj, env=env_for(proj),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks, lines = [("dvc", 0.0)], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Running stage '"):
            marks.append((line.split("'")[1], time.perf_counter() - t0))
    if proc.wait():
        raise SystemExit("dvc repro failed:\n" + "".join(lines[-40:]))
    total = time.perf_counter() - t0
    ends = [t for _, t in marks[1:]] + [total]
    return total, {name: end - start for (name, start), end in zip(marks, ends)}


def peak_child_mib() -> float:
    """The largest resident set of any finished child process so far (the stage workers
    included, once reaped), in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def make_project(dst: Path) -> Path:
    """A fresh git + DVC repository holding this project's pipeline, nothing computed."""
    skip = shutil.ignore_patterns(".venv", ".cells", "data", "models", "__pycache__",
                                  "reports", ".git", "dvc.lock", "*.egg-info", ".pytest_cache",
                                  ".ruff_cache")

    def ignore(folder, names):  # and the DVC cache and state of this checkout
        extra = {"cache", "tmp"} if Path(folder).name == ".dvc" else set()
        return set(skip(folder, names)) | (extra & set(names))
    shutil.copytree(ROOT, dst, ignore=ignore)
    (dst / "reports").mkdir()
    commit(dst, "bench", init=True)
    return dst


def commit(proj: Path, message: str, init: bool = False) -> None:
    if init:
        sh(["git", "init", "-q"], proj)
    sh(["git", "add", "-A"], proj)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm",
        message], proj)


def edit_params(proj: Path, edit, out: str = "params.yaml") -> dict:
    """params.yaml after edit(params) changed it in place, written to `out` (params.yaml
    itself by default)."""
    params = yaml.safe_load((proj / "params.yaml").read_text())
    edit(params)
    (proj / out).write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def set_grid(proj: Path, load=None, temperature=None) -> list:
    """Set the grid's axis values (None keeps them); returns the load values."""
    def edit(params):
        if load is not None:
            params["grid"]["load"]["values"] = load
        if temperature is not None:
            params["grid"]["temperature"]["values"] = temperature
    return edit_params(proj, edit)["grid"]["load"]["values"]
