"""`landscape-taxonomy store gc` in a real git + DVC repository: which cells it keeps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import run, write_params
from landscape_taxonomy.cells.store import CellStore
from landscape_taxonomy.cli.store import store_command

DVC = [sys.executable, "-m", "dvc"]

# A stage that writes what train-grid and compute-metrics write about keys, from a param.
WRITE = """
import json, pathlib, yaml
k = yaml.safe_load(open("gen.yaml"))["key"]
pathlib.Path("models").mkdir(exist_ok=True)
pathlib.Path("models/index.json").write_text(json.dumps({"cells": [{"key": "t" + k}]}))
pathlib.Path("reports/cells").mkdir(parents=True, exist_ok=True)
pathlib.Path("reports/cells/c.json").write_text(json.dumps({"key": "m" + k, "train_key": "t" + k}))
pathlib.Path("reports/summary.json").write_text(json.dumps({"cells": 1}))
"""

DVC_YAML = """stages:
  cells:
    cmd: python write.py
    deps: [write.py]
    params:
      - gen.yaml: [key]
    outs: [models, reports/cells]
    # as the project's summary and findings: git tracks it, the DVC cache never has it
    metrics:
      - reports/summary.json:
          cache: false
"""


def set_key(repo: Path, key: str) -> None:
    (repo / "gen.yaml").write_text(f"key: {key}\n")


@pytest.fixture
def repo(tmp_path, tiny_params) -> Path:
    """Commits on main (key a), a tagged branch (b), an experiment (c), workspace (d)."""
    r = tmp_path / "repo"
    r.mkdir()
    (r / "write.py").write_text(WRITE)
    (r / "dvc.yaml").write_text(DVC_YAML)
    (r / ".gitignore").write_text(".cells/\n")
    tiny_params["store"]["path"] = ".cells"
    write_params(r / "params.yaml", tiny_params)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "t@e.com"],
                ["git", "config", "user.name", "t"], DVC + ["init", "-q"],
                DVC + ["config", "core.analytics", "false"]):
        run(cmd, r)

    def repro_commit(key, msg):
        set_key(r, key)
        run(DVC + ["repro", "-q"], r)
        run(["git", "add", "-A"], r)
        run(["git", "commit", "-qm", msg], r)

    repro_commit("a", "a")
    run(["git", "checkout", "-qb", "side"], r)
    repro_commit("b", "b")
    run(["git", "tag", "v-b"], r)
    run(["git", "checkout", "-q", "main"], r)
    run(["git", "branch", "-D", "side"], r)  # b stays reachable from the tag only
    run(DVC + ["checkout", "-q"], r)
    run(DVC + ["exp", "run", "-q", "-S", "gen.yaml:key=c", "--name", "exp-c"], r)
    run(DVC + ["exp", "apply", "-q", "exp-c"], r)  # then leave it: only refs/exps keep c
    run(["git", "checkout", "-q", "--", "."], r)
    set_key(r, "d")
    run(DVC + ["repro", "-q"], r)  # the workspace: uncommitted run with key d
    store = CellStore(r / ".cells")
    for key in "abcdz":
        for kind, prefix in (("train", "t"), ("metrics", "m")):
            with store.claim(kind, prefix + key), store.writer(kind, prefix + key) as tmp:
                (tmp / "result.json").write_text(json.dumps({"k": key}))
    return r


def cells(repo: Path) -> set[str]:
    return {p.name for kind in ("train", "metrics") for p in (repo / ".cells" / kind).iterdir()
            if not p.name.startswith(".")}


def gc(repo: Path, dry_run: bool, capsys) -> str:
    capsys.readouterr()
    store_command("gc", params=repo / "params.yaml", dry_run=dry_run)
    return capsys.readouterr().out


def test_gc_keeps_what_commits_tags_experiments_and_the_workspace_name(repo, capsys):
    out = gc(repo, True, capsys)
    assert "would remove train/tz" in out and "would remove metrics/mz" in out
    assert cells(repo) == {p + k for p in "tm" for k in "abcdz"}  # dry run: nothing gone
    out = gc(repo, False, capsys)
    assert cells(repo) == {p + k for p in "tm" for k in "abcd"}, out
    assert "8 cells kept, 2 removed" in out
    assert CellStore(repo / ".cells").has("train", "ta")  # what stays is intact


def test_gc_reads_what_git_tracks_from_git(repo, capsys):
    # a clone's DVC cache never holds a `cache: false` output (push and pull skip it): gc
    # must not ask the cache for it, as it asked for reports/summary.json before
    import yaml

    for ref in ("main", "v-b"):
        lock = yaml.safe_load(run(["git", "show", f"{ref}:dvc.lock"], repo).stdout)
        (md5,) = [o["md5"] for o in lock["stages"]["cells"]["outs"]
                  if o["path"] == "reports/summary.json"]
        (repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink(missing_ok=True)
    out = gc(repo, False, capsys)
    assert cells(repo) == {p + k for p in "tm" for k in "abcd"}, out


def test_the_projects_uncached_outputs_are_known_to_gc():
    # every `cache: false` output of the real dvc.yaml is read from git, not asked of the cache
    from landscape_taxonomy.cells.store_gc import uncached_outputs

    real = uncached_outputs((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    assert {"reports/summary.json", "reports/findings.json", "reports/findings_detail.json",
            "reports/params.ok", "reports/curves.csv"} <= real
    assert "models" not in real and "reports/metrics.csv" not in real


def test_gc_removes_nothing_when_a_commits_outputs_are_not_in_the_cache(repo, capsys):
    lock = json.loads(json.dumps(__import__("yaml").safe_load(
        run(["git", "show", "v-b:dvc.lock"], repo).stdout)))
    md5 = lock["stages"]["cells"]["outs"][0]["md5"]
    (repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    with pytest.raises(SystemExit) as e:
        gc(repo, False, capsys)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "is not in the DVC cache" in err and "nothing removed" in err
    assert cells(repo) == {p + k for p in "tm" for k in "abcdz"}
