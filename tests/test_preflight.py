"""Mistakes caught before any work: check-params (the pipeline's first stage) refuses what
cannot work on the planned grid, and train-grid what cannot work on the prepared data,
each with one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, merge, shipped_params
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import ConfigError
from landscape_taxonomy.pipeline import check_params as preflight
from landscape_taxonomy.pipeline import checks, running
from landscape_taxonomy.pipeline import train as train_stage
from landscape_taxonomy.training.data import subset_size


def check(tmp_path, params: dict, *extra):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "check-params",
                           str(path), *extra], capture_output=True, text=True, cwd=tmp_path)


AUTO = {"phase": {"train_loss_threshold": "auto", "mc_threshold": "auto",
                  "cka_threshold": "auto"}}
SMALL = {"grid": {"load": {"param": "width", "values": [2, 8]},
                  "temperature": {"param": "weight_decay", "values": [1e-4, 1e-2]}}}


def test_auto_on_a_grid_it_cannot_read_is_refused_before_training(tmp_path):
    # the case: 2 x 2 cells, 2 seeds (one curve pair), every threshold auto
    params = merge(shipped_params(), {**SMALL, **AUTO})
    params["grid"]["seeds"] = 2
    res = check(tmp_path, params, "--stamp", tmp_path / "ok")
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("error: phase.mc_threshold: auto reads mc's noise from 2 or "
                                 "more curve pairs per cell, and this grid gives 1")
    assert not (tmp_path / "ok").exists()  # the stamp the other stages wait for
    # three seeds measure the band: then only the cell count can stop it
    params["grid"]["seeds"] = 3
    assert check(tmp_path, params).returncode == 0
    params["grid"]["load"]["values"] = [8]
    res = check(tmp_path, params)
    assert res.returncode == 2 and "phase.train_loss_threshold: auto" in res.stderr
    # given thresholds, or a baseline's, need nothing from the grid
    params["phase"] = {"train_loss_threshold": 0.1, "mc_threshold": 1.0, "cka_threshold": 0.8}
    assert check(tmp_path, params).returncode == 0


def test_one_curve_pair_on_a_large_grid_is_a_warning():
    # the paper's setting: 5 seeds, 1 curve pair (ResNet curves are dear), a large grid
    p = parse_params(yaml.safe_load((ROOT / "params.paper.yaml").read_text()))
    assert preflight.errors(p) == []
    (line,) = preflight.warnings(p)
    assert line.startswith("warning: phase.mc_threshold: auto with 1 curve pair")


def test_the_stamp_is_the_same_bytes_for_every_good_file(tmp_path):
    a = merge(shipped_params(), {})
    assert check(tmp_path, a, "--stamp", tmp_path / "a").returncode == 0
    b = merge(a, {"noise": 0.3, "seed": 7})
    assert check(tmp_path, b, "--stamp", tmp_path / "b").returncode == 0
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("text,message", [
    ("grid: null\n", "grid: is empty; give load, temperature and seeds"),
    ("grid:\n  load: null\n", "grid.load: is empty; give param and values"),
    ("train:\n  max_epochs: 1000000000\n",
     "train.max_epochs: must be an integer in [1, 10000], got 1000000000"),
])
def test_a_slip_that_would_train_the_wrong_thing_is_refused(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    res = subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "check-params",
                          str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.splitlines()[0].startswith(f"error: {message}")
    assert len(res.stderr.splitlines()) == 1


def test_a_batch_larger_than_the_training_set_is_refused_before_training(
        prepared, tiny_params, tmp_path):
    prep = running.load_prepared(str(prepared))
    n = subset_size(prep.n_train, tiny_params["data"]["subset"])  # the tiny grid's: 359
    p = parse_params(merge(tiny_params, {"grid": {"temperature": {
        "param": "batch_size", "values": [32, n + 1]}}}))
    with pytest.raises(ConfigError, match=rf"^grid.temperature.values: batch_size {n + 1} is "
                                          rf"larger than the {n} training samples"):
        train_stage.train(p, prepared, tmp_path / "models")
    assert not (tmp_path / "models").exists()
    q = parse_params(merge(tiny_params, {"data": {"subset": 0.5},
                                         "metrics": {"curve": {"batch_size": 800}}}))
    with pytest.raises(ConfigError, match=r"^metrics.curve.batch_size: 800 is larger than the 719"):
        checks.check_batch_sizes(q, prep, "metrics", [0.5])
