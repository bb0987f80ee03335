"""params.yaml: parsed once, strict, one-line errors, nothing written on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from landscape_taxonomy.config import ConfigError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_parse():
    p = load_params(ROOT / "params.yaml")
    assert p.grid.load.param == "width" and p.data.dataset == "digits"


@pytest.mark.parametrize("patch,message", [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"train": {"lr": "fast"}}, "train.lr: must be a number"),
    ({"noise": 1.0}, "noise: must be a number in [0, 1)"),
    ({"data": {"dataset": "imagenet"}}, "data.dataset: must be one of digits"),
    ({"grid": {"load": {"param": "depth", "values": [1]},
               "temperature": {"param": "lr", "values": [0.1]}}}, "grid.load.param"),
    ({"grid": {"load": {"param": "width", "values": [0]},
               "temperature": {"param": "lr", "values": [0.1]}}}, "grid.load.values"),
    ({"metrics": {"hessian": {"samples": "some"}}}, "metrics.hessian.samples"),
    ({"metrics": {"curve": {"points": 2}}}, "metrics.curve.points: must be an integer >= 3"),
    ({"train": {"max_epochs": True}}, "train.max_epochs: must be an integer"),
])
def test_bad_values_name_the_key(tiny_params, patch, message):
    raw = {**tiny_params, **patch}
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_stage_exits_nonzero_with_one_line_and_writes_nothing(tmp_path, tiny_params):
    tiny_params["noise"] = 1.5
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params))
    out = tmp_path / "data" / "prepared"
    res = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare_noisy_data.py"),
                          "--params", str(params), "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == ["error: noise: must be a number in [0, 1), got 1.5"]
    assert not (tmp_path / "data").exists()
