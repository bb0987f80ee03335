"""End to end with real DVC in a temporary git repo: outputs, contracts, what reruns."""

from __future__ import annotations

import base64
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run, shipped_params, write_params
from landscape_taxonomy.report.figures import filename

pytestmark = pytest.mark.slow

DVC = [sys.executable, "-m", "dvc"]
STAGES = ["check-params", "prepare-noisy-data", "train-grid", "compute-metrics",
          "classify-phase", "findings", "plot"]
# an edit of params.yaml reruns check-params (instant) first; findings and plot in either order
REPORT = {"check-params", "classify-phase", "findings", "plot"}


def repro(project) -> list[str]:
    """Run `dvc repro`; return the stages that actually ran."""
    res = run(DVC + ["repro"], project)
    return re.findall(r"Running stage '([\w-]+)'", res.stdout + res.stderr)


def ordered(ran: list[str]) -> bool:
    """Every stage of STAGES ran, in its order (findings and plot in either)."""
    return sorted(ran, key=STAGES.index) == STAGES and ran[:5] == STAGES[:5]


def set_param(project, path: str, value):
    params = yaml.safe_load((project / "params.yaml").read_text())
    node = params
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    write_params(project / "params.yaml", params)


def test_repro_builds_every_contract_and_reruns_only_what_changed(project):
    ran = repro(project)  # and the 1-D model's stage, which depends on none of them
    assert ordered([s for s in ran if s != "rugged-convexity"]) and "rugged-convexity" in ran
    metrics = pd.read_csv(project / "reports" / "metrics.csv")
    for col in ("load", "temperature", "train_loss", "train_acc", "test_loss", "test_acc",
                "hessian_top", "hessian_trace", "mc", "cka", "l2", "load_param",
                "temperature_param", "mc_std", "cka_std", "hessian_top_std", "mc_linear"):
        assert col in metrics.columns, col
    assert len(metrics) == 4 and metrics["load_param"].eq("width").all()
    assert metrics[["train_loss", "test_acc", "hessian_top", "mc", "cka", "l2"]].notna().all().all()
    phases = pd.read_csv(project / "reports" / "phases.csv")
    assert set(phases["phase"]) <= {"I", "II", "III", "IV-A", "IV-B"}
    summary = json.loads((project / "reports" / "summary.json").read_text())
    assert summary["cells"] == 4 and sum(summary["phases"].values()) == 4
    figures = project / "reports" / "figures"
    for name in ("phase_map", "heatmap_hessian_top", "heatmap_mc", "curves"):
        assert (figures / f"{filename(name)}.png").stat().st_size > 1000
        assert (figures / f"{filename(name)}.svg").exists()
    curves = pd.read_csv(project / "reports" / "curves.csv")
    assert set(curves["t"]) == {0, 0.25, 0.5, 0.75, 1.0}
    # every cell's eigenvalue density: integrates to 1, its right edge the top eigenvalue
    density = pd.read_csv(project / "reports" / "density.csv")
    assert set(density["cell"]) == set(metrics["cell"])
    for cell, d in density.groupby("cell"):
        x, y = d["eigenvalue"].to_numpy(), d["density"].to_numpy()
        assert abs(float(((y[1:] + y[:-1]) / 2 * (x[1:] - x[:-1])).sum()) - 1) < 0.02
        cell_json = json.loads((project / "reports" / "cells" / f"{cell}.json").read_text())
        tops = [m["hessian_runs"][0]["top"] for m in cell_json["per_model"]]
        assert x.max() > max(tops) >= x[np.argmax(y > 1e-3 * y.max())]
    assert (figures / "15_density.png").stat().st_size > 1000
    manifest = json.loads((project / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["dataset"] == "digits"
    log = pd.read_csv(project / "models" / "width=1__batch_size=32" / "log.csv")
    assert {"seed", "epoch", "train_loss"} <= set(log.columns)

    assert repro(project) == []  # nothing changed: nothing runs

    set_param(project, "phase.train_loss_threshold", 1e-6)  # every cell turns sharp
    assert set(repro(project)) == REPORT
    assert set(pd.read_csv(project / "reports" / "phases.csv")["phase"]) <= {"I", "II"}

    set_param(project, "metrics.hessian.samples", 32)
    assert set(repro(project)) == {"compute-metrics"} | REPORT

    # label noise: the prepared data serve every level, so only training onwards reruns
    set_param(project, "noise", 0.5)
    assert set(repro(project)) == {"train-grid", "compute-metrics"} | REPORT
    info = json.loads((project / "models" / "width=1__batch_size=32" / "info.json").read_text())
    noise = info["label_noise"]
    n = info["n_train"]
    assert noise["noise"] == 0.5 and abs(noise["replaced"] - 0.5) < 4 * (0.25 / n) ** 0.5
    assert 0 < noise["changed"] < noise["replaced"]  # a redrawn label may keep its class

    # metrics and plots as DVC shows them
    shown = json.loads(run(DVC + ["metrics", "show", "--json"], project).stdout)
    head = shown[""]["data"]["reports/findings.json"]["data"]
    assert set(head) == {f"F{i}" for i in range(1, 11)}
    assert head["F5"]["verdict"] in ("holds", "fails")  # noise 0.5 makes it testable
    assert head["F8"]["verdict"] == "not testable here"
    res = run(DVC + ["plots", "show", "-o", "plots_html"], project)
    html = (project / "plots_html" / "index.html").read_text()
    assert "05_phase_map.png" in html and "Mode connectivity" in html, res.stdout


def test_bad_params_stop_the_run_at_its_first_stage_with_one_line(project):
    # a bad value, and a typo no stage declares (DVC alone would say "up to date")
    for key, value, line in (("train.lr", -1, "error: train.lr: must be a number > 0, got -1"),
                             ("nosie", 0.3, "error: nosie: unknown key; allowed: seed, noise")):
        params = yaml.safe_load((project / "params.yaml").read_text())
        set_param(project, key, value)
        res = run(DVC + ["repro"], project, check=False)
        out = res.stdout + res.stderr
        assert res.returncode != 0 and line in out
        assert re.findall(r"Running stage '([\w-]+)'", out) == ["check-params"]
        write_params(project / "params.yaml", params)


def test_the_default_data_and_model_on_a_tiny_grid(project):
    # MNIST-1D and the 1-D CNN as the default runs them, every threshold auto, the grid cut:
    # a fresh dvc repro gives every contract, phase accuracies with their SEs, the lead.
    default = shipped_params()
    for key, value in [("data", {**default["data"], "mnist1d": {
                           **default["data"]["mnist1d"], "train_samples": 200,
                           "test_samples": 300}}),
                       ("model", default["model"]), ("train.max_epochs", 4),
                       ("grid.load.values", [2, 8, 32]),
                       ("grid.temperature", {"param": "weight_decay",
                                             "values": [0.0001, 0.001, 0.03]}),
                       ("grid.seeds", 3), ("metrics.curve", default["metrics"]["curve"]),
                       ("metrics.curve.epochs", 4), ("phase", default["phase"])]:
        set_param(project, key, value)
    ran = repro(project)
    assert ordered([s for s in ran if s != "rugged-convexity"])
    manifest = json.loads((project / "data" / "prepared" / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["n_train"], manifest["n_test"]) == ("mnist1d", 200, 300)
    assert manifest["input_shape"] == [1, 1, 40]
    metrics = pd.read_csv(project / "reports" / "metrics.csv")
    assert len(metrics) == 9 and (metrics["n_test"] == 300).all()
    assert (metrics["n_train"] == 200).all()
    assert metrics[["train_loss", "test_acc", "mc", "cka", "hessian_top"]].notna().all().all()
    summary = json.loads((project / "reports" / "summary.json").read_text())
    assert summary["cells"] == 9 and summary["thresholds"]["train_loss"]["method"] != "given"
    for p, row in summary["test_acc_by_phase"].items():
        assert 0 < row["se"] < 0.2, p  # seeds' spread and 300 test signals
        assert row["test_set"] == "per test sample", p  # from the cells' hits
    # each cell's per-sample hits (models right on each test signal) give its test accuracy
    for r in metrics.itertuples():
        cell = json.loads((project / "reports" / "cells" / f"{r.cell}.json").read_text())
        hits = np.frombuffer(base64.b64decode(cell["test_hits"]), dtype=np.uint8)
        assert len(hits) == 300 and hits.max() <= 3
        assert hits.mean() / 3 == pytest.approx(r.test_acc, abs=1e-12)
        # the shipped CNN: hand-derived Hessian products and the exact trace, recorded
        assert cell["paths"]["hessian_products"] == ["hand-derived"]
        assert cell["paths"]["trace"] == ["exact"]
    assert isinstance(summary["warnings"], list)


def test_own_model_and_data_by_import_path_run_through_dvc(project):
    # the README's two files, in own/, named in params.yaml
    (project / "own" / "mymodels.py").write_text(
        "from torch import nn\n\n"
        "def tiny(width, input_shape, n_classes):\n"
        "    c, h, w = input_shape\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 8 * width), nn.ReLU(),\n"
        "                         nn.Linear(8 * width, n_classes))\n")
    (project / "own" / "mydata.py").write_text(
        "import numpy as np\n\n"
        "def load(seed):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    x = rng.normal(size=(400, 12)).astype(np.float32)\n"
        "    y = (x[:, 0] > 0).astype(np.int64)\n"
        "    return x[:300], y[:300], x[300:], y[300:]\n")
    set_param(project, "model.arch", "own.mymodels:tiny")
    set_param(project, "data.dataset", "own.mydata:load")
    set_param(project, "data.subset", 1.0)
    assert ordered([s for s in repro(project) if s != "rugged-convexity"])
    metrics = pd.read_csv(project / "reports" / "metrics.csv")
    assert len(metrics) == 4 and metrics["arch"].eq("own.mymodels:tiny").all()
    assert metrics["test_acc"].max() > 0.8 and (metrics["n_train"] == 300).all()
    keys = {c["key"] for c in json.loads((project / "models" / "index.json").read_text())
            ["cells"]}
    # an edit to the factory: DVC reruns the stages (own/ is their dep), every key changes
    text = (project / "own" / "mymodels.py").read_text()
    (project / "own" / "mymodels.py").write_text(text.replace("8 * width", "6 * width"))
    ran = repro(project)
    assert "train-grid" in ran and "compute-metrics" in ran
    after = {c["key"] for c in json.loads((project / "models" / "index.json").read_text())
             ["cells"]}
    assert len(after) == 4 and not after & keys


def test_dvc_repro_through_ray_from_the_repo_root_gives_the_local_models(project):
    # executor.kind: ray with the relative store path and prepared data: the Ray workers get
    # absolute paths, so they find both; with the local run's thread count per cell (the
    # tiny params' one worker takes every core) the cells have the local keys and the models
    # are the local run's bytes.
    pytest.importorskip("ray")
    from landscape_taxonomy.cells.executor.settings import plan_workers

    repro(project)

    def models():
        index = json.loads((project / "models" / "index.json").read_text())["cells"]
        return ({c["cell_id"]: c["key"] for c in index},
                {p.relative_to(project / "models"): p.read_bytes()
                 for p in (project / "models").rglob("seed_*.pt")})
    local_keys, local = models()
    threads = int(plan_workers(1, 1, "cpu")[0]["LT_TORCH_THREADS"])
    set_param(project, "executor", {**shipped_params()["executor"], "kind": "ray",
                                    "num_cpus": threads})
    set_param(project, "store.path", ".cells-ray")  # an empty store: every cell recomputed
    ran = repro(project)
    assert "train-grid" in ran and "compute-metrics" in ran
    assert len(list((project / ".cells-ray" / "train").iterdir())) >= 4
    ray_keys, ray = models()
    assert ray_keys == local_keys and ray == local
