"""The notebook API computes what the pipeline computed, from the pipeline's own outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from landscape_taxonomy import api
from landscape_taxonomy.cells import grid
from landscape_taxonomy.config.loading import as_dict, parse_params
from landscape_taxonomy.config.schema import Params
from landscape_taxonomy.errors import ConfigError, DataError
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import prepare as prepare_stage
from landscape_taxonomy.pipeline import train as train_stage
from landscape_taxonomy.report import stages as report


def test_api_reproduces_the_pipeline_numbers(tmp_path, tiny_params):
    """Same params, same numbers: the API's defaults and seeds are the pipeline's."""
    tiny_params["seed"] = 3  # seeds derive from it: a seed of 0 would hide a wrong path
    tiny_params["grid"]["load"]["values"] = [2]
    tiny_params["grid"]["temperature"]["values"] = [64]
    tiny_params["grid"]["seeds"] = 3
    tiny_params["metrics"]["curve"]["pairs"] = 2  # the second curve is pair (0, 2)
    tiny_params["store"]["path"] = str(tmp_path / "store")
    p = parse_params(tiny_params)
    prepare_stage.prepare(p, tmp_path / "prepared")
    train_stage.train(p, tmp_path / "prepared", tmp_path / "models")
    table = metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "models",
                                          tmp_path / "m.csv", tmp_path / "c.csv",
                                          tmp_path / "cells")
    cell_id = "width=2__batch_size=64"
    details = json.loads((tmp_path / "cells" / f"{cell_id}.json").read_text())
    curves = pd.read_csv(tmp_path / "c.csv")

    cell = api.load_cell(tmp_path / "models" / cell_id, tmp_path / "prepared", params=p)
    assert cell.seed == 3 and details["seeds"] == list(grid.model_seeds(3, 3))
    assert len(cell.models) == 3 and not any(m.training for m in cell.models)
    assert cell.pairs == [(0, 1), (0, 2), (1, 2)]
    for i, row in enumerate(details["per_model"]):
        h = api.hessian(cell.models[i], cell.x_train, cell.y_train, params=p)
        assert h["top"] == pytest.approx(row["hessian_top"], rel=1e-6)
        assert h["trace"] == pytest.approx(row["hessian_trace"], rel=1e-6)
        assert h["runs"][0]["samples"] == row["hessian_runs"][0]["samples"] == 64
        assert api.evaluate(cell.models[i], cell.x_test, cell.y_test) == pytest.approx(
            (row["test_loss"], row["test_acc"]), rel=1e-6)
    for pair in details["pairs"]:
        i, j = map(int, pair["pair"].split("-"))
        assert api.cka(cell, i, j, params=p) == pytest.approx(pair["cka"], rel=1e-6)
        assert api.l2(cell, i, j) == pytest.approx(pair["l2"], rel=1e-9)
    mcs = []
    for i, j in cell.pairs[:2]:  # the pipeline's curve pairs, each seeded by its index
        mc = api.mode_connectivity(cell, i, j, params=p)
        ours = curves[(curves["pair"] == f"{i}-{j}") & (curves["path"] == "curve")]
        assert [r["train_error"] for r in mc["curve"]] == pytest.approx(
            list(ours["train_error"]), abs=1e-9)
        mcs.append(mc["mc"])
    assert table.loc[0, "mc"] == pytest.approx(sum(mcs) / 2, abs=1e-9)
    # a setting left out is the schema's default, validated like params.yaml
    with pytest.raises(ConfigError, match=r"^metrics.cka.samples: must be an integer >= 4"):
        api.cka(cell, samples=2)
    with pytest.raises(ValueError, match="pairs"):
        api.mode_connectivity(cell, 1, 0, params=p)
    assert details["provenance"]["torch"]
    # a model file changed since train-grid wrote it is refused, naming it
    state = tmp_path / "models" / cell_id / "seed_2.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x10
    state.write_bytes(bytes(data))
    with pytest.raises(DataError, match="seed_2.pt does not match its checksum"):
        api.load_cell(tmp_path / "models" / cell_id, tmp_path / "prepared", params=p)


def test_api_defaults_are_the_schema_defaults(monkeypatch):
    """No setting of its own: what the API passes on is the schema's default."""
    seen = {}
    monkeypatch.setattr(api, "hessian_of", lambda model, x, y, **kw: seen.update(kw))
    api.hessian(torch.nn.Linear(1, 1), None, None)
    assert seen == {"seed": Params().seed, **as_dict(Params().metrics.hessian)}


def test_diverged_cells_are_recorded_and_classified_and_pairs_average(tmp_path, tiny_params):
    tiny_params["grid"]["load"]["values"] = [2]
    tiny_params["grid"]["temperature"] = {"param": "lr", "values": [0.05, 1e4]}
    tiny_params["grid"]["seeds"] = 3
    tiny_params["metrics"]["curve"]["pairs"] = 2
    tiny_params["store"]["path"] = str(tmp_path / "store")
    p = parse_params(tiny_params)
    prepare_stage.prepare(p, tmp_path / "prepared")
    entries = train_stage.train(p, tmp_path / "prepared", tmp_path / "models")
    info = json.loads((tmp_path / "models" / entries[1]["cell_id"] / "info.json").read_text())
    assert all(info["diverged"])  # lr 1e4 blows up; the study goes on
    table = metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "models",
                                          tmp_path / "m.csv", tmp_path / "c.csv",
                                          tmp_path / "cells")
    ok, bad = table.iloc[0], table.iloc[1]
    assert ok["n_curve_pairs"] == 2 and ok["n_pairs"] == 3 and ok["mc_std"] >= 0
    assert bad["n_diverged"] == 3 and bad[["train_loss", "mc", "cka"]].isna().all()
    phases = report.classify(tmp_path / "m.csv", tmp_path / "p.csv", tmp_path / "s.json",
                             train_loss_threshold=0.1, mc_threshold=1.0, cka_threshold=0.8)
    assert phases.iloc[1]["phase"] == "diverged" and phases.iloc[0]["phase"] != "diverged"
    assert json.loads((tmp_path / "s.json").read_text())["phases"]["diverged"] == 1
