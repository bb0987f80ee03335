"""What names and keys a cell goes by: exact grid values, the torch thread count, and
outputs that are byte-identical run after run."""

from __future__ import annotations

from pathlib import Path

import torch

from landscape_taxonomy.cells import grid
from landscape_taxonomy.cells.executor import settings as executor_settings
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.pipeline import keys as cell_keys
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import running
from landscape_taxonomy.pipeline import train as train_stage
from landscape_taxonomy.training.data import noise_key
from landscape_taxonomy.training.recipe import TrainResult


def params(tiny_params, tmp_path, load=None, temperature=None, **store):
    if load is not None:
        tiny_params["grid"]["load"] = load
    if temperature is not None:
        tiny_params["grid"]["temperature"] = temperature
    tiny_params["store"] = {"path": str(tmp_path / "store"), **store}
    return parse_params(tiny_params)


def fake_training(**kw):
    return [TrainResult(state={"w": torch.full((2,), float(s))}, log=[{"epoch": 1,
            "train_loss": 0.5}], epochs=1, best_epoch=1) for s in kw["seeds"]]


# -- cell ids ----------------------------------------------------------------------------

def test_ordinary_grid_values_keep_their_cell_ids(tiny_params, tmp_path):
    ids = [c.cell_id for c in grid.cells(params(
        tiny_params, tmp_path, {"param": "width", "values": [1, 16]},
        {"param": "lr", "values": [0.05, 1e-05, 0.4, 2]}))]
    assert ids == ["width=1__lr=0.05", "width=1__lr=1e-05", "width=1__lr=0.4", "width=1__lr=2",
                   "width=16__lr=0.05", "width=16__lr=1e-05", "width=16__lr=0.4",
                   "width=16__lr=2"]
    ids = [c.cell_id for c in grid.cells(params(
        tiny_params, tmp_path, {"param": "noise", "values": [0.0, 0.25]},
        {"param": "weight_decay", "values": [0.0005, 0.0032]}))]
    assert ids[:2] == ["noise=0__weight_decay=0.0005", "noise=0__weight_decay=0.0032"]


def test_values_that_differ_past_six_digits_get_distinct_exact_ids(tiny_params, tmp_path):
    values = [0.1000001, 0.1000002, 1234567.0]
    cells = grid.cells(params(tiny_params, tmp_path, {"param": "width", "values": [1234567]},
                              {"param": "lr", "values": values}))
    ids = [c.cell_id for c in cells]
    assert len(set(ids)) == 3
    assert [float(i.split("lr=")[1]) for i in ids] == values  # reads back exactly
    assert ids[0].startswith("width=1234567__")
    assert noise_key(0.1000001) != noise_key(0.1000002) and noise_key(0.3) == "0.3"


def test_close_grid_values_are_two_cells_in_the_output(tiny_params, tmp_path, monkeypatch,
                                                       prepared):
    monkeypatch.setattr(train_stage, "train_cell", fake_training)
    p = params(tiny_params, tmp_path, {"param": "width", "values": [2]},
               {"param": "lr", "values": [0.1000001, 0.1000002]})
    entries = train_stage.train(p, prepared, tmp_path / "models")
    folders = sorted(d.name for d in (tmp_path / "models").iterdir() if d.is_dir())
    assert folders == sorted(e["cell_id"] for e in entries) and len(folders) == 2


# -- byte-identical outputs --------------------------------------------------------------

def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def outputs(p, prepared, out: Path) -> dict:
    train_stage.train(p, prepared, out / "models")
    metrics_stage.compute_metrics(p, prepared, out / "models", out / "metrics.csv",
                                  out / "curves.csv", out / "cells")
    return {"models": tree(out / "models"), "cells": tree(out / "cells"),
            "metrics.csv": (out / "metrics.csv").read_bytes()}


def test_outputs_dvc_hashes_are_byte_identical_run_after_run(tiny_params, tmp_path, prepared):
    """The same params twice, each with a fresh store, and once more on a store whose cell
    another grid (other names, other axes) computed first: the same bytes every time."""
    small = {"train": {**tiny_params["train"], "max_epochs": 2},
             "metrics": {"hessian": {**tiny_params["metrics"]["hessian"], "samples": 32,
                                     "max_iter": 5},
                         "curve": {**tiny_params["metrics"]["curve"], "epochs": 1,
                                   "endpoint_tol": 100.0},
                         "cka": {**tiny_params["metrics"]["cka"], "samples": 32}}}
    tiny_params.update(small)
    by_width = ({"param": "width", "values": [2]}, {"param": "batch_size", "values": [64]})
    first = outputs(params(dict(tiny_params), tmp_path / "a", *by_width), prepared,
                    tmp_path / "a")
    # another grid reaching the same cell: subset 0.25 at width 2 (the tiny default width)
    other = params(dict(tiny_params), tmp_path / "b", {"param": "subset", "values": [0.25]},
                   {"param": "batch_size", "values": [64]})
    outputs(other, prepared, tmp_path / "b_other")
    again = outputs(params(dict(tiny_params), tmp_path / "b", *by_width), prepared,
                    tmp_path / "b")
    for name in first:
        assert again[name] == first[name], name
    assert set(first["models"]) == {"index.json", "width=2__batch_size=64/checksums.json",
                                    "width=2__batch_size=64/info.json",
                                    "width=2__batch_size=64/log.csv",
                                    "width=2__batch_size=64/seed_0.pt",
                                    "width=2__batch_size=64/seed_1.pt"}
    assert b"seconds" not in first["models"]["width=2__batch_size=64/info.json"]
    assert b"seconds" not in first["cells"]["width=2__batch_size=64.json"]
    logs = tmp_path / "a" / "store" / "logs"
    assert "s epochs=" in (logs / "train" / "width=2__batch_size=64.log").read_text()


# -- the torch thread count --------------------------------------------------------------

def test_the_thread_count_is_in_the_key_and_pinned_wherever_the_cell_runs(
        tiny_params, tmp_path, prepared, monkeypatch):
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 4)
    one_cell = ({"param": "width", "values": [2]}, {"param": "batch_size", "values": [64]})
    tiny_params["executor"]["workers"] = 1  # 4 threads
    p1 = params(tiny_params, tmp_path / "a", *one_cell)
    tiny_params["executor"]["workers"] = 2  # 2 threads each
    p2 = params(tiny_params, tmp_path / "a", *one_cell)
    (cell,) = grid.cells(p1)
    prep = running.load_prepared(str(prepared))
    assert cell_keys.train_key(p1, cell, prep) != cell_keys.train_key(p2, cell, prep)
    entry = {"key": cell_keys.train_key(p1, cell, prep)}
    assert cell_keys.metrics_key(p1, entry) != cell_keys.metrics_key(p2, entry)

    # One cell runs in this process: it computes with its planned count (1 on a 1-core
    # plan), not with whatever this process was set to, so the models are the same.
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 1)
    tiny_params["executor"]["workers"] = 1
    old = torch.get_num_threads()
    models = {}
    try:
        for ambient in (2, 1):
            torch.set_num_threads(ambient)
            p = params(tiny_params, tmp_path / f"t{ambient}", *one_cell)
            train_stage.train(p, prepared, tmp_path / f"t{ambient}" / "models")
            models[ambient] = tree(tmp_path / f"t{ambient}" / "models")
            assert torch.get_num_threads() == ambient  # handed back as it was
    finally:
        torch.set_num_threads(old)
    assert models[2] == models[1]
    assert b'"torch_threads": 1' in models[1]["width=2__batch_size=64/info.json"]


# -- what the code hash reads ------------------------------------------------------------

def test_a_docstring_or_comment_edit_keeps_every_key_and_a_token_changes_it(tmp_path):
    from landscape_taxonomy.cells import code_hash

    src = code_hash.package().root
    pkg = tmp_path / "landscape_taxonomy"
    import shutil
    shutil.copytree(src, pkg, ignore=shutil.ignore_patterns("__pycache__"))

    def key():
        return code_hash.Package(pkg).code_hash(
            [code_hash.parse_entry(e) for e in grid.TRAIN_CODE], exclude=grid.NO_NUMBERS)

    before = key()
    recipe = pkg / "training" / "recipe.py"
    text = recipe.read_text()
    doc = '    """The one divergence rule, for every training path:'
    line = "    r.diverged = not kept < chance"
    assert doc in text and line in text  # settle_divergence, which every trainer runs
    # its docstring reworded, a comment and a blank line added: the same key
    recipe.write_text(text.replace(doc, '    """One rule for divergence, on every path:')
                      .replace(line, "\n    # a comment\n" + line))
    assert key() == before
    # one token changed: another key
    recipe.write_text(text.replace(line, "    r.diverged = not kept <= chance"))
    assert key() != before


def test_the_libraries_are_in_both_keys(tiny_params, tmp_path, prepared, monkeypatch):
    import importlib.metadata as md

    p = params(tiny_params, tmp_path / "a", {"param": "width", "values": [2]},
               {"param": "batch_size", "values": [64]})
    (cell,) = grid.cells(p)
    prep = running.load_prepared(str(prepared))
    train, metrics = cell_keys.train_key(p, cell, prep), cell_keys.metrics_key(p, {"key": "k"})
    real = md.version
    monkeypatch.setattr(md, "version", lambda d: "0.0.1" if d == "torch" else real(d))
    assert cell_keys.train_key(p, cell, prep) != train
    assert cell_keys.metrics_key(p, {"key": "k"}) != metrics
