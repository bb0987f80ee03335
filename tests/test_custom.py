"""A researcher's own model and data by import path, and VGG11 from the registry: they train,
measure and classify on a tiny grid; what they support is found (a LayerNorm model trains
one seed at a time); their code is in the keys; a path that does not import is refused
before any work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import merge
from landscape_taxonomy.cells import grid
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import ConfigError, DataError
from landscape_taxonomy.pipeline import keys as cell_keys
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import prepare as prepare_stage
from landscape_taxonomy.pipeline import running
from landscape_taxonomy.pipeline import train as train_stage
from landscape_taxonomy.report import stages as report
from landscape_taxonomy.training import custom
from landscape_taxonomy.training.models import build_model
from landscape_taxonomy.training.stacked import stackable

MODEL = '''
"""A model the project does not ship: Dropout and LayerNorm."""
from torch import nn


def tiny(width, input_shape, n_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 8 * width), nn.LayerNorm(8 * width),
                         nn.ReLU(), nn.Dropout(0.1), nn.Linear(8 * width, n_classes))
'''

LOADER = '''
import numpy as np


def load(seed):
    """Two noisy blobs per class in 12 dimensions, as plain arrays."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (3, 12))
    y = rng.integers(0, 3, 400)
    x = (centres[y] + rng.normal(0, 1.5, (400, 12))).astype(np.float32)
    return x[:300], y[:300], x[300:], y[300:]
'''


@pytest.fixture
def own(tmp_path, tiny_params, monkeypatch):
    """A project root holding mymodels.py and mydata.py, and params that name them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels.py").write_text(MODEL)
    (tmp_path / "mydata.py").write_text(LOADER)
    return merge(tiny_params, {
        "data": {"dataset": "mydata:load", "subset": 1.0},
        "model": {"arch": "mymodels:tiny"},
        "grid": {"load": {"param": "width", "values": [1, 4]},
                 "temperature": {"param": "batch_size", "values": [32, 64]}, "seeds": 3},
        "store": {"path": str(tmp_path / "store")}})


@pytest.mark.slow
def test_own_model_and_data_train_measure_and_classify(own, tmp_path):
    p = parse_params(own)
    made = prepare_stage.prepare(p, tmp_path / "prepared")
    assert (made["n_train"], made["n_test"], made["n_classes"]) == (300, 100, 3)
    assert made["input_shape"] == [1, 1, 12]
    model = build_model("mymodels:tiny", 2, (1, 1, 12), 3, seed=0)
    assert not stackable(model)  # LayerNorm: one seed at a time, found, not assumed
    train_stage.train(p, tmp_path / "prepared", tmp_path / "models")
    table = metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "models",
                                          tmp_path / "metrics.csv", tmp_path / "curves.csv",
                                          tmp_path / "cells")
    assert len(table) == 4
    cols = ["train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "cka", "l2"]
    assert np.isfinite(table[cols].to_numpy(float)).all()
    assert table["test_acc"].max() > 0.6  # it learned the blobs (chance: 1/3)
    phases = report.classify(tmp_path / "metrics.csv", tmp_path / "phases.csv", None)
    assert set(phases["phase"]) <= {"I", "II", "III", "IV-A", "IV-B", "undetermined"}
    assert len(phases) == 4
    # each cell records which code computed it: trained one seed at a time (LayerNorm), and
    # its Hessian products found for this model, not assumed
    import json
    for info in (tmp_path / "models").glob("*/info.json"):
        assert json.loads(info.read_text())["training_path"] == ["one seed at a time"]
    for cell in (tmp_path / "cells").glob("*.json"):
        paths = json.loads(cell.read_text())["paths"]
        # LayerNorm: no hand-derived products, and the trace is not the Gauss-Newton one
        assert paths == {"hessian_products": ["autograd"], "trace": ["hutchinson"],
                         "stacked_models": False}


@pytest.mark.slow
def test_vgg11_builds_on_images_and_signals_and_trains(tiny_params, prepared, tmp_path):
    for shape in ((1, 8, 8), (3, 32, 32), (1, 1, 40)):
        net = build_model("vgg11", 2, shape, 10, seed=0)
        assert net(__import__("torch").zeros(2, *shape)).shape == (2, 10)
    assert stackable(build_model("vgg11", 1, (1, 8, 8), 10, seed=0))
    p = parse_params(merge(tiny_params, {
        "model": {"arch": "vgg11"},
        "grid": {"load": {"param": "width", "values": [1]},
                 "temperature": {"param": "batch_size", "values": [64]}},
        "store": {"path": str(tmp_path / "store")}}))
    train_stage.train(p, prepared, tmp_path / "models")
    table = metrics_stage.compute_metrics(p, prepared, tmp_path / "models", tmp_path / "m.csv",
                                          tmp_path / "c.csv", tmp_path / "cells")
    assert np.isfinite(table[["train_loss", "hessian_top", "hessian_trace", "mc"]]
                       .to_numpy(float)).all()
    import json
    info = next((tmp_path / "models").glob("*/info.json"))
    assert json.loads(info.read_text())["training_path"] == ["stacked"]  # BatchNorm stacks


def test_the_factorys_code_is_in_the_key(own, tmp_path):
    p = parse_params(own)
    prepare_stage.prepare(p, tmp_path / "prepared")
    prep = running.load_prepared(str(tmp_path / "prepared"))
    cell = grid.cells(p)[0]
    before = cell_keys.train_key(p, cell, prep)
    # a docstring and a comment: the same key
    (tmp_path / "mymodels.py").write_text(MODEL.replace('"""A model', '"""Our model')
                                          .replace("def tiny", "# note\ndef tiny"))
    assert cell_keys.train_key(p, cell, prep) == before
    # a token: another key (an edit to the factory retrains)
    (tmp_path / "mymodels.py").write_text(MODEL.replace("Dropout(0.1)", "Dropout(0.2)"))
    assert cell_keys.train_key(p, cell, prep) != before


@pytest.mark.parametrize("arch,message", [
    ("nomodule:tiny", "model.arch: cannot import nomodule"),
    ("mymodels:absent", "model.arch: mymodels has no callable 'absent'"),
])
def test_a_path_that_does_not_import_is_refused_before_any_work(own, tmp_path, arch, message):
    own["model"]["arch"] = arch
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(own, sort_keys=False))
    res = subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "check-params",
                          "params.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.startswith(f"error: {message}")
    assert len(res.stderr.splitlines()) == 1
    with pytest.raises(ConfigError, match=message.split(": ", 1)[1]):
        custom.resolve(arch, "model.arch")


def test_a_loader_that_returns_the_wrong_thing_says_what(own, tmp_path):
    (tmp_path / "mydata.py").write_text("def load(seed):\n    return 1, 2\n")
    with pytest.raises(DataError, match=r"data.dataset: mydata:load must return \(x_train"):
        prepare_stage.prepare(parse_params(own), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()
