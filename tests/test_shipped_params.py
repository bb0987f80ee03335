"""Every params file shipped at the repository root runs: `cp params.X.yaml params.yaml &&
dvc repro` must not stop at a stage whose declared key the file lacks (DVC refuses such a
stage even where the schema would take the default), nor at a value the schema refuses.

The fast tests read the repository's own files (ROOT). The slow one runs the paper's file
end to end through a real `dvc repro` in a temporary git repo, its shape kept (ResNet18 on
CIFAR-10, width x batch size, every key as shipped) and its size cut.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, merge, run
from landscape_taxonomy.cli.check_params import has_key
from landscape_taxonomy.config.loading import parse_params, read_yaml
from landscape_taxonomy.errors import ConfigError, DataError

SHIPPED = sorted(ROOT.glob("params*.yaml"))


def declared(dvc_yaml: Path) -> list[tuple[str, str]]:
    """(stage, key) for every key of params.yaml a stage of dvc.yaml declares (plain
    entries, and those under a `params.yaml:` mapping)."""
    out = []
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        for entry in stage.get("params") or []:
            keys = [entry] if isinstance(entry, str) else entry.get("params.yaml") or []
            out += [(name, k) for k in keys]
    return out




def problems(doc: dict, dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    """What stops `dvc repro` with this file as params.yaml: each declared key it lacks,
    with the stage, and the schema's complaint."""
    out = [f"{key} (declared by {stage})" for stage, key in declared(dvc_yaml)
           if not has_key(doc, key)]
    try:
        parse_params(doc)
    except ConfigError as e:
        out.append(f"schema: {e}")
    return out


def test_the_shipped_files_are_found():
    assert {"params.yaml", "params.paper.yaml"} <= {p.name for p in SHIPPED}
    assert len(declared(ROOT / "dvc.yaml")) > 20  # every stage's list, not an empty parse


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_params_file_has_every_declared_key_and_validates(path):
    assert problems(read_yaml(path)) == [], f"{path.name} would stop dvc repro"


def test_a_missing_key_or_section_is_named_with_its_stage():
    doc = read_yaml(ROOT / "params.paper.yaml")
    del doc["train"]["cpu_kernels"]  # what the paper's file once lacked
    assert problems(doc) == ["train.cpu_kernels (declared by train-grid)",
                             "train.cpu_kernels (declared by compute-metrics)"]
    doc = read_yaml(ROOT / "params.paper.yaml")
    del doc["model"]  # a declared section: present or not, as a whole
    assert problems(doc) == ["model (declared by train-grid)"]
    doc = read_yaml(ROOT / "params.paper.yaml")
    doc["train"]["cpu_kernels"] = "fastest"
    assert problems(doc) == ["schema: train.cpu_kernels: must be portable or native, "
                             "got 'fastest'"]


# -- check-params --------------------------------------------------------------------------

def check_params(cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "check-params",
                           *map(str, args)], capture_output=True, text=True, cwd=cwd)


def without(doc: dict, dotted: str) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node[part]
    del node[last]
    return doc


def test_check_params_names_a_missing_declared_key_and_its_stage(tmp_path):
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    dvc_yaml = (tmp_path / "dvc.yaml").resolve()
    paper = read_yaml(ROOT / "params.paper.yaml")
    bad = tmp_path / "params.paper.yaml"
    bad.write_text(yaml.safe_dump(without(paper, "train.cpu_kernels"), sort_keys=False))
    res = check_params(tmp_path, bad.name)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        f"error: train.cpu_kernels: missing from {bad.name}; stage train-grid of {dvc_yaml} "
        "declares it, so dvc repro stops there"]

    # the first missing key in dvc.yaml's order, the others listed on the same line
    worse = without(without(paper, "train.cpu_kernels"), "data.root")
    bad.write_text(yaml.safe_dump(without(worse, "executor"), sort_keys=False))
    res = check_params(tmp_path, bad.name)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: data.root: missing from {bad.name}; stage prepare-noisy-data of {dvc_yaml} "
        "declares it, so dvc repro stops there; also missing: train.cpu_kernels, executor"]

    # a params file elsewhere: the dvc.yaml of the working directory
    (tmp_path / "configs").mkdir()
    other = tmp_path / "configs" / "p.yaml"
    other.write_text(yaml.safe_dump(without(paper, "model"), sort_keys=False))
    res = check_params(tmp_path, "configs/p.yaml")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: model: missing from configs/p.yaml; stage train-grid of {dvc_yaml} "
        "declares it, so dvc repro stops there"]

    # no dvc.yaml beside it or in the working directory: the schema alone, which defaults it
    res = check_params(tmp_path / "configs", "p.yaml")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("p.yaml: ok;") and "dvc.yaml" not in res.stdout


def test_check_params_passes_every_shipped_file_against_the_repository_dvc_yaml(tmp_path):
    for path in SHIPPED:
        res = check_params(tmp_path, path)  # the dvc.yaml beside it: ROOT's
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip().endswith(
            f"; has every key the stages of {(ROOT / 'dvc.yaml').resolve()} declare")


# -- the paper's narrow ResNet18s on CPU ---------------------------------------------------

BACKWARD = """
import sys

from landscape_taxonomy.cells import kernels

kernels.apply("portable")  # as every stage process does (train.cpu_kernels: portable)
import torch

torch.set_num_threads(1)  # as each local worker where workers: auto gives one per core
from landscape_taxonomy.training.models import build_model, fast_layout

for width in map(int, sys.argv[1:]):
    model = build_model("resnet18", width, [3, 32, 32], 10, seed=0)
    fmt = fast_layout(model, torch.device("cpu"))
    model = model.to(memory_format=fmt).train()
    for _ in range(10):
        x = torch.randn(16, 3, 32, 32).contiguous(memory_format=fmt)
        model(x).logsumexp(1).sum().backward()
    print(width, flush=True)
"""


def test_the_paper_narrow_resnet18s_survive_a_backward_pass_on_one_cpu_thread():
    """The paper's widths under 8 train and fit curves on CPU in the layout fast_layout picks,
    under the portable pins, on one thread (a local worker's). With torch 2.14's oneDNN,
    channels_last and ONEDNN_MAX_CPU_ISA=AVX2, the backward of a strided 1x1 convolution with
    2 to 7 input channels (ResNet18's shortcut at widths 1, 2, 3, 4, 6) corrupts the heap:
    the worker dies (SIGSEGV / SIGABRT), as compute-metrics' curve fitting did."""
    widths = [w for w in read_yaml(ROOT / "params.paper.yaml")["grid"]["load"]["values"] if w < 8]
    assert widths
    res = subprocess.run([sys.executable, "-X", "faulthandler", "-c", BACKWARD, *map(str, widths)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"died ({res.returncode}) after widths {res.stdout.split()}: " \
                                f"{res.stderr.strip().splitlines()[:1]}"
    assert res.stdout.split() == [str(w) for w in widths]


# -- the paper's file, end to end ---------------------------------------------------------

# Size only: every key stays as shipped (model.arch resnet18, cifar10, width x batch_size
# with values from the paper's lists, the recipe, pyhessian, the executor, the store).
PAPER_CUT = {
    "grid": {"load": {"values": [1, 2]}, "temperature": {"values": [16, 32]}, "seeds": 2},
    "train": {"max_epochs": 2},
    "metrics": {"hessian": {"samples": 32, "max_iter": 10},
                "curve": {"epochs": 1},
                "cka": {"samples": 32}},
    # auto needs more cells than four to read boundaries off (thresholds.MIN_SPLIT): the
    # numbers that reproduce the paper's Fig. 2 labels on its released grid
    "phase": {"train_loss_threshold": 0.02, "mc_threshold": 1.0, "cka_threshold": 0.7},
}
CIFAR_TRAIN, CIFAR_TEST = 40, 40  # images per data_batch_<i> (five of them), in test_batch


def leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


@pytest.fixture
def tiny_params() -> dict:
    """conftest's `project` writes this as params.yaml: the paper's file, its size cut."""
    paper = read_yaml(ROOT / "params.paper.yaml")
    cut = merge(paper, PAPER_CUT)
    assert leaves(cut) == leaves(paper)  # the cut adds no key the shipped file lacks
    return cut


def write_cifar10(root: Path) -> None:
    """A CIFAR-10 folder in the release's format (torchvision.datasets.CIFAR10 reads it):
    pickled dicts of uint8 rows [n, 3072] (channel-major 32x32) and labels. Each class is a
    random image plus noise, so two epochs learn something: a model whose loss stays at
    chance counts as diverged and has no landscape to measure (recipe.settle_divergence).
    Every cell's models end their second epoch at a loss of 1.95 or less (chance: 2.30)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    templates = rng.integers(0, 256, (10, 3072))
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = CIFAR_TEST if name == "test_batch" else CIFAR_TRAIN
        labels = rng.permutation(np.arange(n) % 10)
        pixels = (templates[labels] + rng.integers(-20, 21, (n, 3072))).clip(0, 255)
        batch = {"batch_label": name, "labels": labels.tolist(),
                 "data": pixels.astype(np.uint8),
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": CIFAR_TRAIN,
            "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_paper_params_run_end_to_end_with_their_size_cut(project, monkeypatch):
    from torchvision.datasets import CIFAR10

    from landscape_taxonomy.config.loading import load_params
    from landscape_taxonomy.pipeline import prepare as prepare_stage
    from landscape_taxonomy.training import datasets

    t0 = time.monotonic()
    monkeypatch.chdir(project)
    write_cifar10(project / "data" / "raw")
    # torchvision checks each CIFAR-10 file's md5 against the release's, so it refuses
    # files written here, and a download needs a network. The prepared folder is written
    # here instead, by the pipeline's own prepare reading these files through torchvision
    # with that check off in this process only; the stage processes are not patched:
    # prepare-noisy-data finds the folder made from the same inputs and code and keeps it
    # (prepare_stage.prepare), and everything from train-grid on runs as shipped.
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        datasets.load_torchvision("cifar10", "data/raw", False)
    with monkeypatch.context() as m:
        for name in ("train_list", "test_list"):
            m.setattr(CIFAR10, name, [[f, None] for f, _ in getattr(CIFAR10, name)])
        m.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": None})
        made = prepare_stage.prepare(load_params("params.yaml"), Path("data/prepared"))
    assert made["dataset"] == "cifar10" and made["input_shape"] == [3, 32, 32]
    assert (made["n_train"], made["n_test"]) == (5 * CIFAR_TRAIN, CIFAR_TEST)
    assert made["pixels"] == {"dtype": "uint8", "scale": 255.0}
    before = digests(project / "data" / "prepared")

    res = run([sys.executable, "-m", "dvc", "repro"], project)
    ran = re.findall(r"Running stage '([\w-]+)'", res.stdout + res.stderr)
    assert sorted(ran) == sorted(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    chain = ["prepare-noisy-data", "train-grid", "compute-metrics", "classify-phase", "plot"]
    assert [s for s in ran if s in chain] == chain
    assert digests(project / "data" / "prepared") == before  # kept, not remade

    metrics = pd.read_csv(project / "reports" / "metrics.csv")
    assert len(metrics) == 4
    assert metrics["arch"].eq("resnet18").all()
    assert metrics["load_param"].eq("width").all()
    assert metrics["temperature_param"].eq("batch_size").all()
    assert set(metrics["width"]) == {1, 2} and set(metrics["batch_size"]) == {16, 32}
    assert (metrics["temperature"] == metrics["batch_size"]).all()
    assert metrics["n_models"].eq(2).all() and metrics["n_diverged"].eq(0).all()
    cols = ["train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "cka", "l2"]
    assert np.isfinite(metrics[cols].to_numpy(float)).all(), metrics[cols]
    cell = json.loads((project / "reports" / "cells" / f"{metrics['cell'][0]}.json").read_text())
    assert len(cell["per_model"]) == 2  # seeds
    phases = pd.read_csv(project / "reports" / "phases.csv")
    assert len(phases) == 4
    assert set(phases["phase"]) <= {"I", "II", "III", "IV-A", "IV-B", "undetermined"}
    summary = json.loads((project / "reports" / "summary.json").read_text())
    assert summary["cells"] == 4
    assert (project / "reports" / "figures" / "05_phase_map.png").stat().st_size > 1000
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["train-grid"]["params"]["params.yaml"]["train.cpu_kernels"] \
        == "portable"
    print(f"paper params, cut, end to end: {time.monotonic() - t0:.0f} s")
