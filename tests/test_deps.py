"""Stage deps and cell-key code hashes come from the imports and cannot go stale."""

from __future__ import annotations

import ast
import graphlib
import shutil
import textwrap
from pathlib import Path

import dvc_deps
import pytest
import yaml

from conftest import ROOT
from landscape_taxonomy.cells import code_hash, grid

DVC_YAML = ROOT / "dvc.yaml"
PKG = ROOT / "src" / "landscape_taxonomy"
FIX = "python tools/dvc_deps.py dvc-deps --write"


def stages() -> dict:
    return yaml.safe_load(DVC_YAML.read_text())["stages"]


@pytest.mark.parametrize("stage", list(stages()))
def test_each_stage_declares_exactly_the_code_it_can_run(stage):
    declared = [d for d in stages()[stage].get("deps", []) if dvc_deps.is_code(d)]
    script = dvc_deps.stage_scripts(DVC_YAML)[stage]
    wanted = dvc_deps.stage_code_deps(script, ROOT)
    missing = sorted(set(wanted) - set(declared))
    stale = sorted(set(declared) - set(wanted))
    assert not missing, f"{stage} runs code it does not declare: {missing} ({FIX})"
    assert not stale, f"{stage} declares code it never runs: {stale} ({FIX})"
    assert declared == wanted, f"{stage}: deps out of order ({FIX})"


def test_every_declared_dep_exists_or_is_another_stages_output():
    outs = {next(iter(o)) if isinstance(o, dict) else o
            for s in stages().values() for o in s.get("outs", [])}
    for name, stage in stages().items():
        for d in stage.get("deps", []):
            assert (ROOT / d).exists() or d in outs, f"{name}: {d} is neither a file nor an out"


def test_the_generator_rewrites_only_deps_lists():
    text = DVC_YAML.read_text()
    assert dvc_deps.rewrite_deps(text, dvc_deps.expected_deps(DVC_YAML)) == text
    assert dvc_deps.main(["dvc-deps", "--check", "--dvc-yaml", str(DVC_YAML)]) == 0
    broken = text.replace("      - src/landscape_taxonomy/report/phases.py\n", "")
    broken = broken.replace("      - src/landscape_taxonomy/report/charts.py\n",
                            "      - src/landscape_taxonomy/report/charts.py\n"
                            "      - src/landscape_taxonomy/training/loop.py\n")
    assert broken != text
    assert dvc_deps.rewrite_deps(broken, dvc_deps.expected_deps(DVC_YAML)) == text


def acyclic(graph: dict[str, set[str]]):
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(m or '__init__' for m in e.args[1])}")


def test_module_level_imports_have_no_cycle():
    acyclic(code_hash.package().import_graph(module_level_only=True))


def test_no_import_cycle_even_through_imports_inside_functions():
    acyclic(code_hash.package().import_graph(module_level_only=False))


def _is_main_guard(stmt) -> bool:
    return isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "__name__ == '__main__'"


@pytest.mark.parametrize("module", sorted(code_hash.package().modules),
                         ids=lambda m: m or "__init__")
def test_importing_a_module_only_defines_names(module):
    """What the reach relies on: a module imported but unused cannot change a number."""
    m = code_hash.package().modules[module]
    for i, stmt in enumerate(m.tree.body):
        docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", 0)]
        names_only = isinstance(stmt, (ast.Assign, ast.AnnAssign)) and all(
            isinstance(t, ast.Name) for t in targets)
        ok = (docstring or names_only or _is_main_guard(stmt) or isinstance(
            stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)))
        assert ok, f"{m.path.name}:{stmt.lineno}: import-time code: {ast.unparse(stmt)[:60]}"


def test_every_name_the_stages_and_workers_use_is_resolved():
    pkg = code_hash.Package()
    for script in dvc_deps.stage_scripts(DVC_YAML).values():
        pkg.reach(dvc_deps.script_roots(script))
    pkg.reach(code_hash.parse_entry(e) for e in grid.TRAIN_CODE + grid.METRICS_CODE)
    assert not pkg.unresolved


def reached(entries, pkg=None) -> set[str]:
    pkg = pkg or code_hash.package()
    return {f.relative_to(pkg.root).as_posix()
            for f in pkg.files(code_hash.parse_entry(e) for e in entries)}


def test_the_train_key_covers_the_training_code_and_nothing_downstream():
    files = reached(grid.TRAIN_CODE)
    assert {"pipeline/train.py", "training/data.py", "training/loop.py", "training/batched.py",
            "training/recipe.py", "training/models.py", "training/stacked.py"} <= files
    assert not {f for f in files if f.startswith(("metrics/", "report/", "cli/"))}
    assert not files & {"cells/executor/run.py", "cells/progress.py", "pipeline/keys.py",
                        "pipeline/metrics.py"}
    metrics = reached(grid.METRICS_CODE)
    assert {"metrics/cell.py", "metrics/curvature/hessian.py", "metrics/curves.py",
            "metrics/similarity.py", "training/data.py", "pipeline/metrics.py"} <= metrics
    assert "training/batched.py" not in metrics and "training/recipe.py" not in metrics
    assert "pipeline/train.py" not in metrics


def edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def pkg_copy(tmp_path):
    dst = tmp_path / "landscape_taxonomy"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def hashes(root):
    pkg = code_hash.Package(root)
    return tuple(pkg.code_hash([code_hash.parse_entry(e) for e in entries], exclude=grid.NO_NUMBERS)
                 for entries in (grid.TRAIN_CODE, grid.METRICS_CODE))


@pytest.mark.parametrize("path,old,new,train_changes,metrics_changes", [
    ("training/recipe.py", "return not math.isfinite(loss)", "return not math.isfinite(loss + 0)",
     True, False),
    ("errors.py", "class DataError(RuntimeError):", "class DataError(ValueError):", True, True),
    ("metrics/similarity.py", "x, y = x.double(), y.double()", "x, y = y.double(), x.double()",
     False, True),
    ("report/stages.py", "summary = phases.summarize(result, table, test_hits(cells_dir, table))",
     "summary = phases.summarize(result, table, None)", False, False),
    ("report/charts.py", "import altair as alt", "import altair as alt  # charts", False, False),
    ("cells/store.py", "class CellStore:", "class CellStore:  # where cells live", False, False),
    ("training/loop.py", "def resolve_device(",
     "# a comment between functions\n\n\ndef resolve_device(", False, False),
])
def test_a_key_changes_exactly_when_code_its_worker_runs_changes(pkg_copy, path, old, new,
                                                                 train_changes,
                                                                 metrics_changes):
    before = hashes(pkg_copy)
    edit(pkg_copy / path, old, new)
    after = hashes(pkg_copy)
    assert (before[0] != after[0], before[1] != after[1]) == (train_changes, metrics_changes)


def write(root: Path, files: dict[str, str]) -> code_hash.Package:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return code_hash.Package(root)


def test_reach_follows_local_relative_absolute_imports_and_re_exports(tmp_path):
    pkg = write(tmp_path, {
        "__init__.py": "",
        "a.py": """
            from . import b
            import landscape_taxonomy.c as c

            def entry():
                from .sub import helper  # a re-export, imported inside the function
                return b.used() + c.K + helper()

            def unused():
                from . import d
                return d.f()
            """,
        "b.py": "def used():\n    return 1\n\ndef other():\n    return 2\n",
        "c.py": "K = 3\n",
        "d.py": "def f():\n    return 4\n",
        "sub/__init__.py": "from .impl import helper\n",
        "sub/impl.py": "from ..b import other\n\ndef helper():\n    return other()\n",
    })
    got = pkg.reach([("a", "entry")])
    assert {("b", "used"), ("c", "K"), ("sub", "helper"), ("sub.impl", "helper"),
            ("b", "other")} <= got
    assert not {r for r in got if r[0] == "d"} and ("a", "unused") not in got
    files = {f.relative_to(tmp_path).as_posix() for f in pkg.files([("a", "entry")])}
    assert files == {"a.py", "b.py", "c.py", "sub/__init__.py", "sub/impl.py"}
    assert pkg.import_graph(module_level_only=True)["a"] == {"b", "c"}
    assert pkg.import_graph(module_level_only=False)["a"] == {"b", "c", "d", "sub"}


def test_a_class_counts_whole_and_a_bare_module_counts_whole(tmp_path):
    pkg = write(tmp_path, {
        "__init__.py": "",
        "a.py": """
            from . import b, c

            class Thing(b.Base):
                def method(self):
                    return run(c)

            def run(mod):
                return mod
            """,
        "b.py": "class Base:\n    pass\n\ndef not_used():\n    pass\n",
        "c.py": "def one():\n    pass\n\ndef two():\n    pass\n",
    })
    got = pkg.reach([("a", "Thing")])
    assert {("a", "run"), ("b", "Base"), ("c", "one"), ("c", "two")} <= got
    assert ("b", "not_used") not in got


def test_a_folder_whose_every_module_a_stage_reaches_is_one_dep(tmp_path):
    pkg = write(tmp_path, {
        "__init__.py": "",
        "a.py": "from .sub import f\nfrom .part.one import g\n\n"
                "def entry():\n    return f() + g()\n",
        "sub/__init__.py": "from .impl import f\n",
        "sub/impl.py": "def f():\n    return 1\n",
        "part/__init__.py": "",
        "part/one.py": "def g():\n    return 2\n",
        "part/two.py": "def h():\n    return 3\n",
    })
    got = dvc_deps.folded(pkg.files([("a", "entry")]), tmp_path)
    # sub/ whole (its __init__ re-exports); part/ not: two.py and __init__.py are not reached
    assert [f.relative_to(tmp_path).as_posix() for f in got] == ["a.py", "part/one.py", "sub"]
