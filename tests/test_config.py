"""params.yaml: one schema of defaults, parsed once, strict, one-line errors, nothing
written on bad input."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import shipped_params
from landscape_taxonomy.cells import grid
from landscape_taxonomy.config.base import MAX_MODELS_PER_CELL, SEED_LIMIT
from landscape_taxonomy.config.loading import (
    as_dict,
    load_params,
    load_phase_params,
    parse_params,
    updated,
)
from landscape_taxonomy.config.schema import DIGITS_CLASSES, DIGITS_TEST_FRACTIONS, Params
from landscape_taxonomy.errors import ConfigError
from landscape_taxonomy.metrics.cell import curve_seed, hessian_seed, mixup_seed
from landscape_taxonomy.training.datasets import load_digits
from landscape_taxonomy.training.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) and k not in ("load", "temperature")
                   else {key: v})
    return out


def test_params_yaml_lists_exactly_the_schema_defaults():
    """The schema holds the defaults; params.yaml lists them for DVC. Change both together."""
    shipped = flatten(shipped_params())
    schema = flatten(as_dict(Params()))
    problems = [f"{k}: in params.yaml, not in the schema" for k in shipped.keys() - schema.keys()]
    problems += [f"{k}: in the schema, missing from params.yaml" for k in schema.keys()
                 - shipped.keys()]
    problems += [f"{k}: params.yaml has {shipped[k]!r}, the schema's default "
                 f"(src/landscape_taxonomy/config/schema.py) is {schema[k]!r}"
                 for k in sorted(shipped.keys() & schema.keys())
                 if shipped[k] != schema[k]  # 1 == True: a bool must stay a bool
                 or isinstance(shipped[k], bool) != isinstance(schema[k], bool)]
    assert not problems, "params.yaml and the schema's defaults differ: " + "; ".join(problems)


def test_repository_params_parse_to_the_defaults():
    p = parse_params(shipped_params())
    assert p == Params()
    assert p.phase.train_loss_threshold == "auto"  # boundaries read off the data by default
    paper = load_params(ROOT / "params.paper.yaml")
    assert paper.model.arch == "resnet18" and paper.train.max_epochs == 150


def test_objects_are_frozen_and_dump_round_trips():
    p = Params()
    with pytest.raises(ValueError):
        p.train.lr = 1.0
    assert parse_params(as_dict(p)) == p


def test_recipe_has_no_defaults_of_its_own():
    with pytest.raises(TypeError):
        Recipe()  # every field comes from the schema
    t = Params().train
    r = Recipe.from_config(t, lr=0.5)
    assert r.lr == 0.5 and r.max_epochs == t.max_epochs and r.stop_tol == t.stop_tol


def patched(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = patched(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


BAD = [  # (patch of the tiny params, the exact line)
    ({"bogus": 1}, "bogus: unknown key; allowed: seed, noise, data, model, grid, train, "
                   "metrics, phase, executor, store, rugged"),
    ({"train": {"lr": "fast"}}, "train.lr: must be a number > 0, got 'fast'"),
    ({"train": {"lr": "auto"}}, "train.lr: must be a number > 0, got 'auto'"),
    ({"train": {"lr": float("nan")}}, "train.lr: must be a number > 0, got nan"),
    ({"train": {"weight_decay": float("inf")}}, "train.weight_decay: must be a number >= 0, "
                                                "got inf"),
    ({"train": {"max_epochs": True}},
     "train.max_epochs: must be an integer in [1, 10000], got True"),
    ({"train": {"batch_size": 32.0}}, "train.batch_size: must be an integer >= 1, got 32.0"),
    ({"train": {"vectorize": 1}}, "train.vectorize: must be auto, true or false, got 1"),
    ({"train": 5}, "train: must be a mapping, got 5"),
    ({"noise": 1.0}, "noise: must be a number in [0, 1), got 1.0"),
    ({"noise": True}, "noise: must be a number in [0, 1), got True"),
    ({"seed": -1}, "seed: must be an integer in [0, 2^32), got -1"),
    ({"seed": 2**70}, "seed: must be an integer in [0, 2^32), got 1180591620717411303424"),
    ({"seed": 1.5}, "seed: must be an integer in [0, 2^32), got 1.5"),
    ({"data": {"dataset": "imagenet"}}, "data.dataset: must be one of mnist1d, digits, mnist, "
                                        "fashion-mnist, cifar10, cifar100, svhn, or an import "
                                        "path package.module:loader, got 'imagenet'"),
    ({"model": {"arch": "vit"}}, "model.arch: must be one of cnn, resnet18, mlp, vgg11, or an "
                                 "import path package.module:factory, got 'vit'"),
    ({"data": {"mnist1d": {"train_samples": 5}}},
     "data.mnist1d.train_samples: must be an integer >= 10, got 5"),
    ({"data": {"dataset": "digits", "test_fraction": 0.001}},
     "data.test_fraction: must be a number in [0.005565, 0.994435] for digits (1797 images, "
     "10 classes: at least 10 test and 10 training images), got 0.001"),
    ({"grid": {"load": {"param": "depth", "values": [1]}}},
     "grid.load.param: must be one of width, subset, noise, got 'depth'"),
    ({"grid": {"load": {"param": "width", "values": [0]}}},
     "grid.load.values: must be integers >= 1 for width, got 0"),
    ({"grid": {"load": {"param": "width", "values": [2, 2]}}},
     "grid.load.values: must be distinct values, got [2, 2]"),
    ({"grid": {"load": {"param": "subset", "values": [0.5, True]}}},
     "grid.load.values: must be numbers in (0, 1] for subset, got True"),
    ({"grid": {"temperature": {"param": "lr", "values": [float("nan")]}}},
     "grid.temperature.values: must be numbers > 0 for lr, got nan"),
    ({"grid": {"temperature": {"param": "lr", "values": []}}},
     "grid.temperature.values: must be a non-empty list, got []"),
    ({"grid": {"seeds": 1001}}, "grid.seeds: must be an integer in [1, 1000], got 1001"),
    ({"grid": {"load": {"param": "noise", "values": [0.0, 0.2]}}, "noise": 0.1},
     "noise: must be 0 when grid.load.param is noise (the grid sets it), got 0.1"),
    ({"metrics": {"hessian": {"samples": "some"}}},
     "metrics.hessian.samples: must be a positive integer or 'all', got 'some'"),
    ({"metrics": {"hessian": {"samples": True}}},
     "metrics.hessian.samples: must be a positive integer or 'all', got True"),
    ({"metrics": {"curve": {"points": 2}}}, "metrics.curve.points: must be an integer >= 3, got 2"),
    ({"metrics": {"hessian": {"trace": "exact"}}},
     "metrics.hessian.trace: must be auto or hutchinson, got 'exact'"),
    ({"phase": {"cka_threshold": 1.5}}, "phase.cka_threshold: must be 'auto' or a number in "
                                        "[0, 1], got 1.5"),
    ({"phase": {"mc_threshold": "automatic"}}, "phase.mc_threshold: must be 'auto' or a "
                                               "number >= 0, got 'automatic'"),
    ({"executor": {"workers": 0}}, "executor.workers: must be a positive integer or 'auto', "
                                   "got 0"),
]


@pytest.mark.parametrize("patch,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_values_get_one_line_naming_the_key(tiny_params, patch, message):
    with pytest.raises(ConfigError) as e:
        parse_params(patched(tiny_params, patch))
    assert str(e.value) == message


def test_an_empty_section_means_its_defaults(tiny_params):
    tiny_params["metrics"] = None
    assert parse_params(tiny_params).metrics == Params().metrics


def test_grid_values_are_tuples_of_the_axis_type(tiny_params):
    tiny_params["grid"]["load"] = {"param": "subset", "values": [1, 0.5]}
    p = parse_params(tiny_params)
    assert p.grid.load.values == (1.0, 0.5) and type(p.grid.load.values[0]) is float


def test_the_largest_seed_keeps_every_derived_seed_valid():
    """seed*1000+i (grid.model_seeds), seed+1 (data), derive_seed: all accepted."""
    top = SEED_LIMIT - 1
    derived = [top, top + 1, *grid.model_seeds(top, MAX_MODELS_PER_CELL)]
    for s in derived:
        torch.Generator().manual_seed(s)
    torch.manual_seed(max(derived))
    np.random.default_rng(top)
    assert all(0 <= f(top, 1) < 2**31 for f in (hessian_seed, curve_seed))
    assert 0 <= mixup_seed(top) < 2**31
    assert parse_params({"seed": top}).seed == top
    with pytest.raises(ConfigError):
        parse_params({"seed": SEED_LIMIT})


def test_digits_test_fraction_bounds_are_the_data_split():
    lo, hi = DIGITS_TEST_FRACTIONS
    for f in (lo, hi):
        _, ytr, _, yte, k = load_digits(f, 0)
        assert k == DIGITS_CLASSES and min(len(ytr), len(yte)) == k
        parse_params({"data": {"dataset": "digits", "test_fraction": f}})
    for f in (lo - 1e-6, hi + 1e-6):
        with pytest.raises(ConfigError, match="data.test_fraction"):
            parse_params({"data": {"dataset": "digits", "test_fraction": f}})
    # other datasets bring their own test split
    parse_params({"data": {"dataset": "mnist", "test_fraction": 0.001}})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_duplicate_keys_are_refused_with_the_line(tmp_path):
    path = write(tmp_path, "seed: 0\ntrain:\n  lr: 0.05\n  momentum: 0.9\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert str(e.value) == f"train.lr: duplicate key at line 5 of {path} (first at line 3)"
    path = write(tmp_path, "grid:\n  load: {param: width, values: [1], param: noise}\n")
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert str(e.value) == f"grid.load.param: duplicate key at line 2 of {path} " \
                           "(first at line 2)"


def test_exponents_without_a_dot_are_numbers(tmp_path):
    """DVC (YAML 1.2) writes `-S train.weight_decay=1e-5` as 1e-5; PyYAML alone reads a string."""
    p = load_params(write(tmp_path, "train: {weight_decay: 1e-5, lr: 5E-2}\n"))
    assert (p.train.weight_decay, p.train.lr) == (1e-5, 0.05)
    with pytest.raises(ConfigError, match=r"^train.max_epochs: must be an integer in "
                                          r"\[1, 10000\], got 10.0$"):
        load_params(write(tmp_path, "train: {max_epochs: 1e1}\n"))


def test_phase_section_alone_with_overrides(tmp_path):
    assert as_dict(load_phase_params(None)) == {"train_loss_threshold": "auto",
                                                "mc_threshold": "auto", "cka_threshold": "auto",
                                                "thresholds_from": None}
    path = write(tmp_path, "phase: {mc_threshold: 2}\nnot_params: [whatever]\n")
    ph = load_phase_params(path, {"cka_threshold": "0.5", "train_loss_threshold": "auto"})
    assert (ph.train_loss_threshold, ph.mc_threshold, ph.cka_threshold) == ("auto", 2.0, 0.5)
    assert load_phase_params(path).train_loss_threshold == Params().phase.train_loss_threshold
    with pytest.raises(ConfigError) as e:
        load_phase_params(path, {"mc_threshold": "low"})
    assert str(e.value) == "--mc-threshold: must be a number or auto, got 'low'"
    with pytest.raises(ConfigError) as e:
        load_phase_params(path, {"cka_threshold": "2"})
    assert str(e.value) == "phase.cka_threshold: must be 'auto' or a number in [0, 1], got 2.0"
    path = write(tmp_path, "phase: {thresholds_from: thresholds/baseline.json}\n")
    assert load_phase_params(path).thresholds_from == "thresholds/baseline.json"
    with pytest.raises(ConfigError) as e:
        load_phase_params(write(tmp_path, "phase: {thresholds_from: 0.1}\n"))
    assert str(e.value) == ("phase.thresholds_from: must be a path to a JSON file of "
                            "thresholds, or null, got 0.1")


def test_updated_validates_like_params():
    h = updated(Params().metrics.hessian, "metrics.hessian", samples="all")
    assert h.samples == "all" and h.max_iter == Params().metrics.hessian.max_iter
    with pytest.raises(ConfigError) as e:
        updated(Params().metrics.hessian, "metrics.hessian", tol=-1.0)
    assert str(e.value) == "metrics.hessian.tol: must be a number > 0, got -1.0"


# -- the commands: exit status 2, one line on stderr, nothing written ---------------------

CLI_BAD = [  # (params.yaml text appended to the tiny params' dump, the line after "error: ")
    ("seed: -1\n", "seed: must be an integer in [0, 2^32), got -1"),
    ("noise: .nan\n", "noise: must be a number in [0, 1), got nan"),
    ("data: {test_fraction: 0.001}\n",
     "data.test_fraction: must be a number in [0.005565, 0.994435] for digits (1797 images, "
     "10 classes: at least 10 test and 10 training images), got 0.001"),
    ("train: {lr: true}\n", "train.lr: must be a number > 0, got True"),
]


def bad_file(tmp_path, tiny_params, tail: str) -> Path:
    text = yaml.safe_dump(tiny_params, sort_keys=False)
    over = yaml.safe_load(tail)
    key = next(iter(over))
    if isinstance(over[key], dict):  # replace the section in place, keeping the others
        tiny_params = patched(tiny_params, over)
        text = yaml.safe_dump(tiny_params, sort_keys=False)
    else:
        text = text.replace(f"{key}: {tiny_params[key]}\n", tail)
    return write(tmp_path, text)


def run_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.parametrize("tail,message", CLI_BAD, ids=[m.split(":")[0] for _, m in CLI_BAD])
def test_check_params_exits_2_with_one_line(tmp_path, tiny_params, tail, message):
    path = bad_file(tmp_path, tiny_params, tail)
    res = run_cli(tmp_path, "check-params", path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [f"error: {message}"]


def test_duplicate_key_stops_prepare_before_any_output(tmp_path, tiny_params):
    text = yaml.safe_dump(tiny_params, sort_keys=False) + "seed: 1\n"
    path = write(tmp_path, text)
    line = text.count("\n")
    first = 1 + text.splitlines().index("seed: 0")
    out = tmp_path / "data" / "prepared"
    res = run_cli(tmp_path, "prepare", "--params", path, "--out", out)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"error: seed: duplicate key at line {line} of {path} "
                                       f"(first at line {first})"]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("tail,message", CLI_BAD[2:3] + [("noise: 1.5\n", "noise: must be a "
                                                          "number in [0, 1), got 1.5")])
def test_prepare_stage_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_params, tail,
                                                                  message):
    path = bad_file(tmp_path, tiny_params, tail)
    out = tmp_path / "data" / "prepared"
    res = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare_noisy_data.py"),
                          "--params", str(path), "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"error: {message}"]
    assert not (tmp_path / "data").exists()
