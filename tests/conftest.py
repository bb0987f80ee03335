"""Shared fixtures: a tiny grid on a slice of digits, on CPU, under tmp_path."""

from __future__ import annotations

import configparser
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from landscape_taxonomy.cells import kernels

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # the developer tools (dvc_deps), not in the package

# Ray, when a test starts it, stays on loopback (read at `import ray`).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Tests compute cells in this process too: its kernels are set before torch first runs, as
# a stage process's are (train.cpu_kernels' default).
kernels.apply("portable")

# Overrides of the repository's params.yaml (DVC wants every declared key present).
TINY_OVERRIDES = {
    "seed": 0,
    "noise": 0.0,
    "data": {"dataset": "digits", "subset": 0.25, "test_fraction": 0.2},  # 360 to train on
    "model": {"arch": "cnn", "width": 2},
    "grid": {"load": {"param": "width", "values": [1, 4]},
             "temperature": {"param": "batch_size", "values": [32, 128]},
             "seeds": 2},
    "train": {"max_epochs": 3, "device": "cpu"},
    "metrics": {"hessian": {"samples": 64, "max_iter": 20},
                "curve": {"epochs": 2, "lr": 0.01, "batch_size": 128, "endpoint_tol": 2.0},
                "cka": {"samples": 64}},
    # four cells are too few to read boundaries off (`auto`, tests/test_thresholds.py)
    "phase": {"train_loss_threshold": 0.1, "mc_threshold": 1.0, "cka_threshold": 0.8},
    "executor": {"kind": "local", "workers": 1},
    "store": {"path": ".cells"},
    "rugged": {"runs": 8, "steps": 1000},  # the 1-D study's stage, kept short
}


def pytest_collection_modifyitems(config, items):
    """`requires_gpu` tests run where torch sees a CUDA GPU and are skipped elsewhere (they
    stay in the suite, and run on the first machine that has one)."""
    if not any("requires_gpu" in item.keywords for item in items):
        return
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="requires_gpu: torch sees no CUDA GPU here")
    for item in items:
        if "requires_gpu" in item.keywords:
            item.add_marker(skip)


def shipped_params_text() -> str:
    """params.yaml as committed, not as the workspace holds it: `dvc exp run` and `dvc exp
    apply` write their params there, and the tests must not depend on the last experiment.
    Outside a git checkout (an unpacked source tree), the file itself."""
    res = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True,
                         text=True)
    return res.stdout if res.returncode == 0 else (ROOT / "params.yaml").read_text()


def shipped_params() -> dict:
    return yaml.safe_load(shipped_params_text())


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def tiny_params() -> dict:
    return merge(shipped_params(), TINY_OVERRIDES)


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def env_with_venv() -> dict:
    """Environment whose `python` and `dvc` are this interpreter's (the stages call python)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(cmd, cwd, check=True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env_with_venv(), capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def project(tmp_path, tiny_params) -> Path:
    """A copy of the project in a fresh git + DVC repo, with the tiny grid's params."""
    dst = tmp_path / "proj"
    dst.mkdir()
    # thresholds/: classify-phase's dep; own/: the researcher's code, train-grid's
    for name in ("dvc.yaml", "stages", "thresholds", "own"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst / name)
    # The stages' deps name library files by path: link the package source in.
    (dst / "src").mkdir()
    shutil.copytree(ROOT / "src" / "landscape_taxonomy", dst / "src" / "landscape_taxonomy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    write_params(dst / "params.yaml", tiny_params)
    (dst / ".gitignore").write_text(".cells/\n")
    run(["git", "init", "-q"], dst)
    run(["git", "config", "user.email", "t@example.com"], dst)
    run(["git", "config", "user.name", "test"], dst)
    run([sys.executable, "-m", "dvc", "init", "-q"], dst)
    shutil.copytree(ROOT / ".dvc" / "plots", dst / ".dvc" / "plots")
    # the repository's page template for `dvc plots show` (the offline one)
    page = configparser.ConfigParser()
    page.read(ROOT / ".dvc" / "config")
    if page.has_option("plots", "html_template"):
        run([sys.executable, "-m", "dvc", "config", "plots.html_template",
             page.get("plots", "html_template")], dst)
    shutil.copy(ROOT / ".dvcignore", dst / ".dvcignore")
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-qm", "init"], dst)
    return dst


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """The tiny grid's prepared data (digits, noise 0), written once per session."""
    from landscape_taxonomy.config.loading import parse_params
    from landscape_taxonomy.pipeline import prepare as prepare_stage

    raw = merge(shipped_params(), TINY_OVERRIDES)
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    prepare_stage.prepare(parse_params(raw), out)
    return out
