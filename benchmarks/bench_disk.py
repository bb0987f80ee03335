"""Disk the study's results take, next to their size (issue 14).

    python benchmarks/bench_disk.py                    # .dvc/config's cache.type
    python benchmarks/bench_disk.py --cache-type copy  # DVC's default, for comparison
    python benchmarks/bench_disk.py --large            # models of 1.5 and 5.9 MB

In a temporary git + DVC copy (bench_incremental.py's 2x2 grid): one `dvc repro`, then the
bytes held by the cell store, models/, the DVC cache and the workspace outputs (data/,
reports/) together, each file counted once per inode (a hard link is not a second copy),
against the bytes of what the study made (models/, reports/metrics.csv, reports/cells/).
Target: at most 1.2x. What does not grow with the models (the prepared data, the figures)
dominates at this project's sizes; --large gives the grid cnn widths 64 and 128 (1.5 and
5.9 MB a model; the paper's ResNet18 at width 64 is 45 MB), trained 1 epoch on a quarter
of the data with small metric budgets, since the bytes do not depend on those.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from project import SMALL, edit_params, make_project, repro, set_grid, sh

LARGE = [64, 128]


def quick(params):
    """Budgets that change no byte count: one epoch, a quarter of the data, short curves
    and Hessian runs."""
    params["train"]["max_epochs"] = 1
    params["data"]["subset"] = 0.25
    params["metrics"]["curve"]["epochs"] = 1
    params["metrics"]["hessian"].update(samples=64, lanczos_steps=5, max_iter=10,
                                        trace_min_probes=4, max_probes=8)
    # one epoch leaves too few distinct losses for auto thresholds; phases hold no bytes
    params["phase"].update(train_loss_threshold=0.1, mc_threshold=1.0, cka_threshold=0.7)


def tree_files(*roots: Path):
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def held(*roots: Path) -> int:
    """Bytes of the distinct inodes under the roots."""
    seen, total = set(), 0
    for f in tree_files(*roots):
        st = f.stat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def sizes(*roots: Path) -> int:
    return sum(f.stat().st_size for f in tree_files(*roots))


def footprint(proj: Path) -> str:
    """Two lines: what the study made against what holds it on disk, in the copy `proj`."""
    cells, models, cache = proj / ".cells", proj / "models", proj / ".dvc" / "cache"
    work = [proj / "data", proj / "reports"]
    made = sizes(models, proj / "reports" / "metrics.csv", proj / "reports" / "cells")
    disk = held(cells, models, cache, *work)
    extra = disk - held(cells, models)  # what neither the store nor models/ holds
    mb = 1e6
    return (f"models + metrics {made / mb:.2f} MB; .cells {sizes(cells) / mb:.2f} MB, models "
            f"{sizes(models) / mb:.2f} MB, .dvc/cache {sizes(cache) / mb:.2f} MB, data/ + "
            f"reports/ {sizes(*work) / mb:.2f} MB as files; held by all, each inode once: "
            f"{disk / mb:.2f} MB = {disk / made:.2f}x the results (target <= 1.2x)\nof which "
            f"not in the store or models/ (prepared data {held(proj / 'data') / mb:.2f} MB, "
            f"figures {held(proj / 'reports' / 'figures') / mb:.2f} MB, tables): "
            f"{extra / mb:.2f} MB; the models and metrics alone: "
            f"{held(cells, models) / made:.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-type", help="set DVC's cache.type to this first")
    ap.add_argument("--large", action="store_true",
                    help="cnn widths 64 and 128, 1 epoch on a quarter of the data")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        load = LARGE if args.large else SMALL["load"]
        set_grid(proj, load, SMALL["temperature"])
        if args.large:
            edit_params(proj, quick)
        if args.cache_type:
            sh([sys.executable, "-m", "dvc", "config", "cache.type", args.cache_type], proj)
        repro(proj)
        what = f"2x2 grid, widths {load}" + (" (1 epoch, subset 0.25)" if args.large else "")
        print(f"{what}, cache.type {args.cache_type or '(.dvc/config)'}: " + footprint(proj))


if __name__ == "__main__":
    main()
