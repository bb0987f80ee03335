"""The content-addressed cell store: one folder per (kind, key), complete or absent.

    <root>/<kind>/<key>/...   e.g. .cells/train/3f2a.../seed_0.pt

A folder appears by an atomic rename once everything in it is written, so a killed run
leaves at most a hidden temporary that nobody reads. The root is a param (`store.path`):
point several machines at one network folder and they share every finished cell.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .io import atomic_dir


class CellStore:
    def __init__(self, root: str | Path):
        self.root = Path(os.path.expanduser(str(root)))

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_dir()

    def writer(self, kind: str, key: str):
        """Context manager yielding a temporary folder that becomes path(kind, key)."""
        return atomic_dir(self.path(kind, key))

    def log_path(self, stage: str, cell_id: str) -> Path:
        p = self.root / "logs" / stage / f"{cell_id}.log"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a finished store folder into a stage output (hard links where possible)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        target = dst / f.name
        if f.is_dir():
            copy_tree(f, target)
            continue
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
