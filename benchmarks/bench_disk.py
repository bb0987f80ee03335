"""Disk the study's results take, next to their size (issue 14).

    python benchmarks/bench_disk.py                    # .dvc/config's cache.type
    python benchmarks/bench_disk.py --cache-type copy  # DVC's default, for comparison

In a temporary git + DVC copy (bench_incremental.py's 2x2 grid): one `dvc repro`, then the
bytes held by the cell store, models/ and the DVC cache together, each file counted once
per inode (a hard link is not a second copy), against the bytes of what the study made
(models/, reports/metrics.csv, reports/cells/). Target: at most 1.2x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from project import SMALL, make_project, repro, set_grid, sh


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
    made = sizes(models, proj / "reports" / "metrics.csv", proj / "reports" / "cells")
    disk = held(cells, models, cache)
    extra = disk - held(cells, models)  # what only the DVC cache holds
    mb = 1e6
    return (f"models + metrics {made / mb:.2f} MB; .cells {sizes(cells) / mb:.2f} MB, models "
            f"{sizes(models) / mb:.2f} MB, .dvc/cache {sizes(cache) / mb:.2f} MB as files; held "
            f"by the three, each inode once: {disk / mb:.2f} MB = {disk / made:.2f}x the results "
            f"(target <= 1.2x)\nof which only in the DVC cache (prepared data, figures, "
            f"tables, any model copy): {extra / mb:.2f} MB; the models and metrics alone: "
            f"{held(cells, models) / made:.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-type", help="set DVC's cache.type to this first")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proj = make_project(Path(tmp) / "proj")
        set_grid(proj, SMALL["load"], SMALL["temperature"])
        if args.cache_type:
            sh([sys.executable, "-m", "dvc", "config", "cache.type", args.cache_type], proj)
        repro(proj)
        print(f"2x2 grid, cache.type {args.cache_type or '(.dvc/config)'}: " + footprint(proj))


if __name__ == "__main__":
    main()
