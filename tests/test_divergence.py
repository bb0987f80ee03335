"""Diverged means no usable model: a non-finite loss, or a kept checkpoint no better than
chance; and a subset too small to train is refused up front."""

from __future__ import annotations

import json
import math

import pytest
import torch

from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import ConfigError
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import train as train_stage
from landscape_taxonomy.report import stages as report
from landscape_taxonomy.training.datasets import load_digits
from landscape_taxonomy.training.loop import train_cell
from landscape_taxonomy.training.recipe import Recipe, TrainResult, chance_loss, settle_divergence


def test_chance_is_the_entropy_of_the_labels():
    assert chance_loss(torch.arange(10).repeat(7)) == pytest.approx(math.log(10))
    assert chance_loss(torch.tensor([0, 0, 0, 1])) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_the_rule_reads_the_kept_checkpoint():
    log = [{"train_loss": v} for v in (2.5, 2.0, 9.0)]
    kept = TrainResult(state={}, log=log, epochs=3, best_epoch=2)
    settle_divergence(kept, math.log(10))
    assert not kept.diverged  # it blew up after epoch 2, but the model kept is epoch 2's
    never = TrainResult(state={}, log=log[:1], epochs=1, best_epoch=1)
    settle_divergence(never, math.log(10))
    assert never.diverged


@pytest.mark.parametrize("vectorize", [False, True])
def test_a_finite_explosion_is_diverged_on_every_training_path(vectorize):
    xtr, ytr, *_ = load_digits(0.2, 0)
    x, y = torch.from_numpy(xtr[:359]), torch.from_numpy(ytr[:359])
    kw = dict(arch="cnn", width=4, input_shape=(1, 8, 8), n_classes=10, x=x, y=y,
              seeds=[0, 1], device=torch.device("cpu"), vectorize=vectorize)
    hot = train_cell(**kw, recipe=Recipe.from_config(lr=10.0, max_epochs=2))
    assert all(math.isfinite(row["train_loss"]) for r in hot for row in r.log)  # finite...
    assert all(r.diverged for r in hot)  # ...and still diverged
    if vectorize:  # the usual recipe trains (the loop is the slow path on CPU: once is enough)
        ok = train_cell(**kw, recipe=Recipe.from_config(lr=0.05, max_epochs=3))
        assert not any(r.diverged for r in ok)


def test_lr_10_on_the_tiny_grid_is_classified_diverged(tmp_path, tiny_params, prepared):
    tiny_params["grid"]["load"]["values"] = [4]
    tiny_params["grid"]["temperature"] = {"param": "lr", "values": [10.0]}
    tiny_params["store"]["path"] = str(tmp_path / "store")
    p = parse_params(tiny_params)
    (entry,) = train_stage.train(p, prepared, tmp_path / "models")
    info = json.loads((tmp_path / "models" / entry["cell_id"] / "info.json").read_text())
    assert info["diverged"] == [True, True]
    metrics_stage.compute_metrics(p, prepared, tmp_path / "models", tmp_path / "m.csv",
                                  tmp_path / "c.csv", tmp_path / "cells")
    phases = report.classify(tmp_path / "m.csv", tmp_path / "p.csv", None,
                             train_loss_threshold=0.1, mc_threshold=1.0, cka_threshold=0.8)
    assert list(phases["phase"]) == ["diverged"]


@pytest.mark.parametrize("patch,message", [
    ({"data": {"subset": 0.003}},
     "data.subset: 0.003 leaves 4 of 1438 training samples; a cell needs at least 10 (one per "
     "class), so the subset must be >= 0.00696"),
    ({"grid": {"load": {"param": "subset", "values": [0.5, 0.0001]},
               "temperature": {"param": "batch_size", "values": [32]}, "seeds": 2}},
     "grid.load.values: subset 0.0001 leaves 1 of 1438 training samples"),
])
def test_a_subset_too_small_to_train_is_refused_before_any_work(tmp_path, tiny_params, prepared,
                                                                monkeypatch, patch, message):
    def no_training(**kw):
        raise AssertionError("trained a cell that cannot train")
    monkeypatch.setattr(train_stage, "train_cell", no_training)
    for k, v in patch.items():
        tiny_params[k] = {**tiny_params[k], **v}
    tiny_params["store"]["path"] = str(tmp_path / "store")
    with pytest.raises(ConfigError) as e:
        train_stage.train(parse_params(tiny_params), prepared, tmp_path / "models")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert not (tmp_path / "models").exists()
