"""What names and keys a cell goes by: exact grid values, the torch thread count, and
outputs that are byte-identical run after run."""

from __future__ import annotations

import torch

from landscape_taxonomy import grid, pipeline
from landscape_taxonomy.config import parse_params
from landscape_taxonomy.data import noise_key
from landscape_taxonomy.train import TrainResult


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
    monkeypatch.setattr(pipeline, "train_cell", fake_training)
    p = params(tiny_params, tmp_path, {"param": "width", "values": [2]},
               {"param": "lr", "values": [0.1000001, 0.1000002]})
    entries = pipeline.train(p, prepared, tmp_path / "models")
    folders = sorted(d.name for d in (tmp_path / "models").iterdir() if d.is_dir())
    assert folders == sorted(e["cell_id"] for e in entries) and len(folders) == 2
