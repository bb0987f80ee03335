"""The content-addressed cell store: one folder per (kind, key), complete and verified, or absent.

    <root>/<kind>/<key>/...            e.g. .cells/train/3f2a.../seed_0.pt
    <root>/<kind>/<key>/checksums.json sha256 of every other file, written last
    <root>/<kind>/.<key>.lock          flock'd by whoever writes (exclusive) or reads (shared)
    <root>/logs/<stage>/<cell>.log     timings and the like (not part of any DVC output)

A folder appears by an atomic rename once everything in it, its checksum manifest last,
is written, so a killed run leaves at most a hidden temporary that nobody reads (the next
writer of that cell removes it). Every reuse checks the files against the manifest; a cell
that fails (a flipped bit, a truncated file, no manifest) is moved aside and recomputed
with a warning, or, with `store.on_corrupt: error`, stops the run naming the folder and
the cell. A lock per cell lets several runs share one store: a cell is trained once, and
nobody reads a folder while it is replaced. The root is a param (`store.path`): point
several machines at one network folder and they share every finished cell.
`check` vets the root before any work: creatable, writable, and apart from the stage
outputs (which every run replaces) and the repository root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError, CorruptCell
from .io import atomic_dir, sweep_stale

MANIFEST = "checksums.json"


ON_CORRUPT = ("recompute", "error")


_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in `folder` (call it last)."""
    files = {name: {"bytes": (folder / name).stat().st_size,
                    "sha256": file_sha256(folder / name)} for name in _files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")


def verify(folder: Path) -> str | None:
    """None if every file of `folder` matches its manifest, else what is wrong (one phrase)."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    present = set(_files(folder))
    for name in sorted(set(files) - present):
        return f"{name} is missing"
    for name in sorted(present - set(files)):
        return f"{name} is not in {MANIFEST}"
    for name, want in sorted(files.items()):
        path = folder / name
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {want['bytes']} recorded"
        if file_sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum"
    return None


class CellStore:
    def __init__(self, root: str | Path, on_corrupt: str = "recompute"):
        if on_corrupt not in ON_CORRUPT:
            raise ConfigError(f"store.on_corrupt: must be recompute or error, got {on_corrupt!r}")
        self.root = Path(os.path.expanduser(str(root)))
        self.on_corrupt = on_corrupt
        self._verified: set[tuple[str, str]] = set()  # hashed once per reuse

    def check(self, outputs=()) -> None:
        """Before any work: the root must be creatable and writable, and apart from the
        stage outputs (each run replaces them) and the repository root. ConfigError else."""
        root = self.root.resolve()
        allowed = ("allowed: a writable folder outside models, data/prepared and reports "
                   "and other than the repository root (default .cells)")
        repo = repository_root()
        banned = [Path(o).resolve() for o in outputs]
        if repo is not None:
            banned += [repo / "models", repo / "data" / "prepared", repo / "reports"]
            if root == repo:
                raise ConfigError(f"store.path: {str(self.root)!r} is the repository root; "
                                  f"{allowed}")
        for out in banned:
            if root == out or root.is_relative_to(out) or out.is_relative_to(root):
                how = ("is" if root == out else "is inside" if root.is_relative_to(out)
                       else "contains")
                raise ConfigError(f"store.path: {str(self.root)!r} {how} the stage output "
                                  f"{out}, which every run replaces; {allowed}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=root)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"store.path: {str(self.root)!r} cannot be created or written "
                              f"({e.strerror or e}); {allowed}") from None

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    @contextlib.contextmanager
    def lock(self, kind: str, key: str, shared: bool = False):
        """Hold the cell's lock: exclusive to write it, shared to read it."""
        lock_file = self.root / kind / f".{key}.lock"
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # made by another user of a shared store
            fd = os.open(lock_file, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def has(self, kind: str, key: str, cell_id: str = "") -> bool:
        """Whether the cell is there and intact. A damaged one is handled per on_corrupt:
        moved aside with a warning (False: recompute it) or CorruptCell."""
        if (kind, key) in self._verified:
            return True
        folder = self.path(kind, key)
        if not folder.exists():
            return False
        with self.lock(kind, key, shared=True):
            problem = verify(folder) if folder.exists() else "gone"
        if problem is None:
            self._verified.add((kind, key))
            return True
        with self.lock(kind, key):  # look again: another run may have repaired it
            return self._settle(kind, key, cell_id)

    def _settle(self, kind: str, key: str, cell_id: str) -> bool:
        """Under the exclusive lock: True if the cell is intact, else deal with it."""
        folder = self.path(kind, key)
        if not folder.exists():
            return False
        problem = verify(folder)
        if problem is None:
            self._verified.add((kind, key))
            return True
        where = f"store {self.root}: {kind} cell {cell_id or key} ({kind}/{key})"
        if self.on_corrupt == "error":
            raise CorruptCell(f"{where} is corrupt: {problem}; remove that folder or set "
                              "store.on_corrupt: recompute")
        self.discard(kind, key)
        sys.stderr.write(f"warning: {where} is corrupt ({problem}); recomputing it\n")
        sys.stderr.flush()
        return False

    def discard(self, kind: str, key: str) -> None:
        """Move a cell aside in one rename, then delete it (call under the exclusive lock)."""
        folder = self.path(kind, key)
        aside = Path(tempfile.mkdtemp(prefix=f".{key}.old-", dir=folder.parent))
        with contextlib.suppress(FileNotFoundError):
            os.replace(folder, aside / key)
        shutil.rmtree(aside, ignore_errors=True)

    @contextlib.contextmanager
    def claim(self, kind: str, key: str, cell_id: str = ""):
        """Exclusive lock on a cell; yields whether it is already there and intact (then
        there is nothing to write). Clears what killed writers of this cell left behind."""
        with self.lock(kind, key):
            ok = self._settle(kind, key, cell_id)
            if not ok:
                sweep_stale(self.path(kind, key))
            yield ok

    @contextlib.contextmanager
    def writer(self, kind: str, key: str):
        """A temporary folder that becomes path(kind, key), checksums recorded last.
        Call it inside claim() so no other run writes the same cell."""
        with atomic_dir(self.path(kind, key)) as tmp:
            yield tmp
            write_manifest(tmp)
        self._verified.add((kind, key))

    def _intact_locked(self, kind: str, key: str, cell_id: str) -> None:
        """Under a shared lock: the cell must be intact (hashed unless this store already
        did); one that vanished or went bad since has() is an error, never read."""
        if (kind, key) in self._verified:
            return
        folder = self.path(kind, key)
        problem = verify(folder) if folder.is_dir() else "it is not there"
        if problem is not None:
            raise CorruptCell(f"store {self.root}: {kind} cell {cell_id or key} "
                              f"({kind}/{key}) went bad while in use ({problem}); rerun")
        self._verified.add((kind, key))

    def copy_out(self, kind: str, key: str, dst: Path, cell_id: str = "") -> None:
        """Copy an intact cell into a stage output."""
        with self.lock(kind, key, shared=True):
            self._intact_locked(kind, key, cell_id)
            copy_tree(self.path(kind, key), dst)

    def read_text(self, kind: str, key: str, name: str, cell_id: str = "") -> str:
        """One file of an intact cell."""
        with self.lock(kind, key, shared=True):
            self._intact_locked(kind, key, cell_id)
            return (self.path(kind, key) / name).read_text()

    def log_path(self, stage: str, cell_id: str) -> Path:
        p = self.root / "logs" / stage / f"{cell_id}.log"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def repository_root(start: Path | None = None) -> Path | None:
    """The DVC repository the run is in (the nearest folder up with a dvc.yaml or .dvc)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() or (d / ".dvc").is_dir():
            return d
    return None


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
