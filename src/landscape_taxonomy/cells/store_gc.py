"""`landscape-taxonomy store gc`: drop the store cells that no experiment refers to.

A cell is kept when any of these names its key (train cells also through a metrics
result's `train_key`):

- the workspace: `models/index.json` and `reports/cells/*.json` as they are now;
- every commit reachable from a branch, a tag or a DVC experiment (`refs/exps/...`): the
  outputs its `dvc.lock` records, read from the DVC cache (their `.dir` listings name each
  file's md5; the JSON files among them hold the keys).

A commit whose outputs are not in the local DVC cache cannot tell which cells it needs, so
gc then stops before deleting anything and says which commit (`dvc fetch --all-commits`
brings them). Cells go under their exclusive lock, so a run using the store meanwhile
never loses a cell it is reading or writing.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError
from .store import CellStore

KINDS = ("train", "metrics")
MAX_JSON = 1 << 20  # our key-bearing files are small; bigger JSON outputs are not ours


@dataclass
class GcReport:
    kept: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    bytes_removed: int = 0
    commits: int = 0


def keys_in(obj) -> set[str]:
    """The store keys a models/index.json or reports/cells/<cell>.json names."""
    found = set()
    if isinstance(obj, dict):
        for name in ("key", "train_key"):
            if isinstance(obj.get(name), str):
                found.add(obj[name])
        for cell in obj.get("cells", []) if isinstance(obj.get("cells"), list) else []:
            found |= keys_in(cell)
    return found


def _json_keys(text: bytes | str) -> set[str]:
    try:
        return keys_in(json.loads(text))
    except (ValueError, UnicodeDecodeError):
        return set()


def workspace_keys(repo: Path) -> set[str]:
    """Keys named by the outputs now in the workspace (every JSON under a stage output)."""
    found: set[str] = set()
    for out in _lock_outs(_read_lock((repo / "dvc.lock").read_text())
                          if (repo / "dvc.lock").is_file() else {}):
        path = repo / out["path"]
        files = path.rglob("*.json") if path.is_dir() else [path]
        for f in files:
            if f.suffix == ".json" and f.is_file() and f.stat().st_size <= MAX_JSON:
                found |= _json_keys(f.read_bytes())
    for default in ("models/index.json",):  # a workspace run before its dvc.lock exists
        if (repo / default).is_file():
            found |= _json_keys((repo / default).read_bytes())
    if (repo / "reports" / "cells").is_dir():
        for f in (repo / "reports" / "cells").glob("*.json"):
            found |= _json_keys(f.read_bytes())
    return found


def _read_lock(text: str) -> dict:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}


def _lock_outs(lock: dict) -> list[dict]:
    outs = []
    for stage in (lock.get("stages") or {}).values():
        outs += [o for o in stage.get("outs", []) if isinstance(o, dict) and "path" in o]
    return outs


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def reachable_commits(repo: Path) -> list[str]:
    """Every commit reachable from a branch, a tag or a DVC experiment ref."""
    refs = _git(repo, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags",
                "refs/exps").split()
    return _git(repo, "rev-list", *refs).split() if refs else []


def cache_dir(repo: Path) -> Path:
    """The local DVC cache of the repository (cache.dir honoured)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return Path(r.cache.local.path)


def _cache_object(cache: Path, md5: str) -> Path | None:
    for p in (cache / md5[:2] / md5[2:], cache.parent / md5[:2] / md5[2:]):  # 3.x, 2.x
        if p.is_file():
            return p
    return None


def commit_keys(repo: Path, commit: str, cache: Path) -> set[str]:
    """Keys named by the outputs of one commit's dvc.lock. ConfigError if the cache lacks
    an output, since then the commit's cells cannot be told."""
    try:
        text = _git(repo, "show", f"{commit}:dvc.lock")
    except subprocess.CalledProcessError:
        return set()  # a commit without a run
    found: set[str] = set()
    try:
        uncached = uncached_outputs(_git(repo, "show", f"{commit}:dvc.yaml"))
    except subprocess.CalledProcessError:
        uncached = set()
    for out in _lock_outs(_read_lock(text)):
        md5, path = out.get("md5"), out["path"]
        if not md5:
            continue
        if path in uncached:  # `cache: false`: git holds it, the DVC cache never will
            found |= _git_json_keys(repo, commit, path)
            continue
        if md5.endswith(".dir"):
            listing = _cache_object(cache, md5)
            if listing is None:
                raise _missing(commit, path, md5)
            entries = json.loads(listing.read_text())
            files = [(e["relpath"], e["md5"]) for e in entries]
        else:
            files = [(path, md5)]
        for rel, file_md5 in files:
            if not rel.endswith(".json"):
                continue
            obj = _cache_object(cache, file_md5)
            if obj is None:
                raise _missing(commit, f"{path}/{rel}" if rel != path else path, file_md5)
            if obj.stat().st_size <= MAX_JSON:
                found |= _json_keys(obj.read_bytes())
    return found


def uncached_outputs(dvc_yaml: str) -> set[str]:
    """The outputs (outs, metrics, plots) a dvc.yaml marks `cache: false`."""
    doc = _read_lock(dvc_yaml)
    found = set()
    for stage in (doc.get("stages") or {}).values() if isinstance(doc, dict) else []:
        if not isinstance(stage, dict):
            continue
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section) or []:
                if isinstance(entry, dict):
                    found |= {path for path, opts in entry.items()
                              if isinstance(opts, dict) and opts.get("cache") is False}
    return found


def _git_json_keys(repo: Path, commit: str, path: str) -> set[str]:
    """Keys in a git-tracked output of a commit (a folder's JSON files included); none if
    git does not have it."""
    try:
        names = _git(repo, "ls-tree", "-r", "--name-only", commit, "--", path).split()
    except subprocess.CalledProcessError:
        return set()
    found: set[str] = set()
    for name in names:
        if name.endswith(".json"):
            blob = subprocess.run(["git", "show", f"{commit}:{name}"], cwd=repo,
                                  capture_output=True).stdout
            if len(blob) <= MAX_JSON:
                found |= _json_keys(blob)
    return found


def _missing(commit: str, path: str, md5: str) -> ConfigError:
    return ConfigError(f"store gc: commit {commit[:10]}'s {path} (md5 {md5}) is not in the "
                       "DVC cache, so the cells it needs cannot be told; nothing removed "
                       "(dvc fetch --all-commits --all-tags first)")


def referenced_keys(repo: Path) -> tuple[set[str], int]:
    """(every key the workspace or a reachable commit names, how many commits read)."""
    keys = workspace_keys(repo)
    commits = reachable_commits(repo) if (repo / ".git").exists() else []
    if commits:
        cache = cache_dir(repo)
        for c in commits:
            keys |= commit_keys(repo, c, cache)
    return keys, len(commits)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def gc(store: CellStore, repo: Path, dry_run: bool = False) -> GcReport:
    """Remove (or, dry_run, list) every cell of `store` that nothing in `repo` refers to."""
    keys, n_commits = referenced_keys(repo)
    report = GcReport(commits=n_commits)
    for kind in KINDS:
        folder = store.root / kind
        if not folder.is_dir():
            continue
        for cell in sorted(folder.iterdir()):
            if cell.name.startswith(".") or not cell.is_dir():
                continue  # lock files and a running writer's temporaries
            key = cell.name
            if key in keys:
                report.kept.append((kind, key))
                continue
            report.removed.append((kind, key))
            report.bytes_removed += _size(cell)
            if not dry_run:
                # The lock file stays: one deleted while another run waits on it would
                # let a third lock a new file of that name, and both write the cell.
                with store.lock(kind, key):
                    store.discard(kind, key)
    return report
