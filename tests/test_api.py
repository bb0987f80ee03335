"""The notebook API computes what the pipeline computed, from the pipeline's own outputs."""

from __future__ import annotations

import json

import pytest

from landscape_taxonomy import api, pipeline, report
from landscape_taxonomy.config import parse_params


def test_api_reproduces_the_pipeline_numbers(tmp_path, tiny_params):
    tiny_params["grid"]["load"]["values"] = [2]
    tiny_params["grid"]["temperature"]["values"] = [64]
    tiny_params["store"]["path"] = str(tmp_path / "store")
    p = parse_params(tiny_params)
    pipeline.prepare(p, tmp_path / "prepared")
    pipeline.train(p, tmp_path / "prepared", tmp_path / "models")
    table = pipeline.compute_metrics(p, tmp_path / "prepared", tmp_path / "models",
                                     tmp_path / "m.csv", tmp_path / "c.csv", tmp_path / "cells")
    cell_id = "width=2__batch_size=64"
    details = json.loads((tmp_path / "cells" / f"{cell_id}.json").read_text())

    cell = api.load_cell(tmp_path / "models" / cell_id, tmp_path / "prepared", device="cpu")
    assert len(cell.models) == 2 and not any(m.training for m in cell.models)
    h = api.hessian(cell.models[0], cell.x_train, cell.y_train, samples=64, max_iter=20)
    assert h["top"] == pytest.approx(details["per_model"][0]["hessian_top"], rel=1e-6)
    assert api.l2(cell) == pytest.approx(table.loc[0, "l2"], rel=1e-9)
    loss, acc = api.evaluate(cell.models[1], cell.x_test, cell.y_test)
    assert acc == pytest.approx(details["per_model"][1]["test_acc"])
    assert 0 < api.cka(cell, samples=64) <= 1
    mc = api.mode_connectivity(cell, epochs=2)
    assert set(mc) >= {"mc", "mc_linear", "curve", "line"}
    # provenance recorded per cell
    assert details["provenance"]["torch"] and details["seeds"] == [0, 1]
    assert details["per_model"][0]["hessian_runs"][0]["samples"] == 64


def test_diverged_cells_are_recorded_and_classified_and_pairs_average(tmp_path, tiny_params):
    tiny_params["grid"]["load"]["values"] = [2]
    tiny_params["grid"]["temperature"] = {"param": "lr", "values": [0.05, 1e4]}
    tiny_params["grid"]["seeds"] = 3
    tiny_params["metrics"]["curve"]["pairs"] = 2
    tiny_params["store"]["path"] = str(tmp_path / "store")
    p = parse_params(tiny_params)
    pipeline.prepare(p, tmp_path / "prepared")
    entries = pipeline.train(p, tmp_path / "prepared", tmp_path / "models")
    info = json.loads((tmp_path / "models" / entries[1]["cell_id"] / "info.json").read_text())
    assert all(info["diverged"])  # lr 1e4 blows up; the study goes on
    table = pipeline.compute_metrics(p, tmp_path / "prepared", tmp_path / "models",
                                     tmp_path / "m.csv", tmp_path / "c.csv", tmp_path / "cells")
    ok, bad = table.iloc[0], table.iloc[1]
    assert ok["n_curve_pairs"] == 2 and ok["n_pairs"] == 3 and ok["mc_std"] >= 0
    assert bad["n_diverged"] == 3 and bad[["train_loss", "mc", "cka"]].isna().all()
    phases = report.classify(tmp_path / "m.csv", tmp_path / "p.csv", tmp_path / "s.json",
                             train_loss_threshold=0.1, mc_threshold=1.0, cka_threshold=0.8)
    assert phases.iloc[1]["phase"] == "diverged" and phases.iloc[0]["phase"] != "diverged"
    assert json.loads((tmp_path / "s.json").read_text())["phases"]["diverged"] == 1
