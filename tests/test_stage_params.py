"""Every stage's `params:` in dvc.yaml lists exactly the params.yaml keys the stage reads.

Each stage's own command line (dvc.yaml's cmd) runs in this process on a one-cell grid,
with every config object recording which of its fields are read after params.yaml is
parsed (validation reads everything and steers nothing). A read the stage does not declare
would let DVC skip a rerun the change needs; a declared key it never reads reruns the stage
for nothing. Sections compare at DVC's granularity: a declared section stands for every key
under it in params.yaml. Reads that depend on the grid's axes are covered by running each
grid below and taking the union.
"""

from __future__ import annotations

import dataclasses
import importlib
import shlex

import dvc_deps
import typer
import yaml
from typer.testing import CliRunner

from conftest import ROOT, merge, shipped_params
from landscape_taxonomy.cli import check_params, compute, report, rugged, store
from landscape_taxonomy.config import loading

ONE_CELL = {
    "grid": {"load": {"values": [2]}, "temperature": {"values": [64]}, "seeds": 2},
    "train": {"max_epochs": 2},
    "metrics": {"hessian": {"samples": 32, "max_iter": 5},
                "curve": {"epochs": 1, "points": 3, "endpoint_tol": 100.0},
                "cka": {"samples": 32}},
    # one cell is too few to read boundaries off (auto): numbers, as a user would give
    "phase": {"train_loss_threshold": 0.1, "mc_threshold": 1.0, "cka_threshold": 0.8},
}
# Each grid, with the stages it runs (those after a skipped one reuse the last outputs).
# Reads can branch on the axes: train-grid reads `noise` only where noise is not the load
# axis; prepare reads neither (its noise draws serve every level), and the stages from
# compute-metrics on never see the grid's params.
GRIDS = {
    "width x batch_size": ({}, None),  # None: every stage
    "noise x lr": ({"grid": {"load": {"param": "noise", "values": [0.2]},
                             "temperature": {"param": "lr", "values": [0.05]}}},
                   ("prepare-noisy-data", "train-grid")),
}


def leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= leaves(v, key + ".") if isinstance(v, dict) else {key}
    return out


def expand(declared, all_leaves: set[str]) -> set[str]:
    out = set()
    for d in declared:
        under = {k for k in all_leaves if k == d or k.startswith(d + ".")}
        assert under, f"dvc.yaml declares {d!r}, which params.yaml does not have"
        out |= under
    return out


def field_names(cls) -> frozenset:
    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls))
    return frozenset(getattr(cls, "model_fields", {}))  # pydantic


def is_node(obj) -> bool:
    return not isinstance(obj, type) and bool(field_names(type(obj)))


class Recorder:
    """Records the dotted keys read from config objects while `on`."""

    def __init__(self, params):
        self.on, self.reads, self.at = False, set(), {}
        self.paths: dict[type, set[str]] = {}  # each config class, where it sits
        self._walk(params, "")

    def _walk(self, obj, path):
        self.paths.setdefault(type(obj), set()).add(path)
        for name in field_names(type(obj)):
            value = getattr(obj, name)
            if is_node(value):
                self._walk(value, f"{path}.{name}" if path else name)

    def base(self, obj) -> str:
        if id(obj) in self.at:
            return self.at[id(obj)][0]
        paths = self.paths[type(obj)]  # a section handed out on its own (load_phase_params)
        assert len(paths) == 1, f"{type(obj).__name__} read with no path to it"
        return next(iter(paths))

    def read(self, obj, name, value):
        base = self.base(obj)
        path = f"{base}.{name}" if base else name
        if is_node(value):
            self.at[id(value)] = (path, value)  # holding it keeps its id from being reused
        else:
            self.reads.add(path)

    def instrument(self, monkeypatch):
        for cls in self.paths:
            fields, orig = field_names(cls), cls.__getattribute__

            def getattribute(obj, name, _orig=orig, _fields=fields):
                value = _orig(obj, name)
                if name in _fields and self.on:
                    self.read(obj, name, value)
                return value

            monkeypatch.setattr(cls, "__getattribute__", getattribute)
            if hasattr(cls, "model_dump"):  # pydantic: a whole section read at once
                dump = cls.model_dump

                def model_dump(obj, *a, _dump=dump, **kw):
                    out = _dump(obj, *a, **kw)
                    if self.on:
                        base = self.base(obj)
                        self.reads |= leaves(out, base + "." if base else "")
                    return out

                monkeypatch.setattr(cls, "model_dump", model_dump)
        # parsing and validating params.yaml reads every key: start recording after it
        for cli in (check_params, compute, report, rugged, store):
            for name, fn in vars(cli).items():
                if callable(fn) and name.startswith("load") and getattr(
                        fn, "__module__", None) == loading.__name__:
                    def loaded(*a, _fn=fn, **kw):
                        self.on = False
                        out = _fn(*a, **kw)
                        self.on = True
                        return out
                    monkeypatch.setattr(cli, name, loaded)


def run_stage(stage: dict) -> None:
    words = shlex.split(stage["cmd"])
    script = next(w for w in words if w.endswith(".py"))
    (mod, name), = dvc_deps.script_roots(ROOT / script)
    assert mod.startswith("cli."), f"{script}: a stage script runs a cli command"
    app = typer.Typer()
    app.command()(getattr(importlib.import_module(f"landscape_taxonomy.{mod}"), name))
    res = CliRunner().invoke(app, words[words.index(script) + 1:], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def test_each_stage_declares_exactly_the_params_it_reads(tmp_path, monkeypatch, tiny_params):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    monkeypatch.chdir(tmp_path)
    reads = {name: set() for name in stages}
    for overrides, which in GRIDS.values():
        params = merge(merge(tiny_params, ONE_CELL), overrides)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        rec = Recorder(loading.parse_params(params))
        with monkeypatch.context() as mp:
            rec.instrument(mp)
            for name, stage in stages.items():
                if which is not None and name not in which:
                    continue
                rec.on, rec.reads = False, set()
                run_stage(stage)
                reads[name] |= rec.reads
    all_leaves = leaves(shipped_params())
    problems = []
    for name, stage in stages.items():
        if "params.yaml" in stage.get("deps", []):
            continue  # depends on the whole file (check-params): any edit reruns it
        declared = expand(stage.get("params", []), all_leaves)
        if extra := sorted(reads[name] - declared):
            problems.append(f"{name} reads undeclared params {extra}")
        if unused := sorted(declared - reads[name]):
            problems.append(f"{name} declares params it never reads {unused}")
    assert not problems, "\n".join(problems)
