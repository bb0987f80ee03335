"""On a CUDA GPU: a tiny grid trains and measures there, twice to the same bytes (the
deterministic settings of train.deterministic_cuda), and its keys name the GPU and the
libraries. Skipped where torch sees no GPU (`requires_gpu`, conftest.py)."""

from __future__ import annotations

import pytest

from conftest import merge
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.pipeline import keys as cell_keys
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import prepare as prepare_stage
from landscape_taxonomy.pipeline import train as train_stage

pytestmark = pytest.mark.requires_gpu


def test_a_tiny_grid_on_cuda_is_deterministic(tmp_path, tiny_params):
    import torch

    runs = []
    for name in ("a", "b"):
        p = parse_params(merge(tiny_params, {
            "train": {"device": "cuda"},
            "store": {"path": str(tmp_path / name / "store")},
            "executor": {"workers": 1}}))
        prepare_stage.prepare(p, tmp_path / name / "prepared")
        train_stage.train(p, tmp_path / name / "prepared", tmp_path / name / "models")
        metrics_stage.compute_metrics(p, tmp_path / name / "prepared", tmp_path / name / "models",
                                      tmp_path / name / "m.csv", tmp_path / name / "c.csv",
                                      tmp_path / name / "cells")
        runs.append((tmp_path / name / "m.csv").read_bytes())
        key = cell_keys.runtime_key(p)
        assert key["gpus"] == [torch.cuda.get_device_name(0)] and key["cudnn"]
    assert runs[0] == runs[1]
    assert not torch.backends.cuda.matmul.allow_tf32
