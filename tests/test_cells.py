"""Cell-level reuse, interruption, parallel workers, Ray, and DVC's experiment queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import env_with_venv, run, write_params
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import prepare as prepare_stage
from landscape_taxonomy.pipeline import train as train_stage

pytestmark = pytest.mark.slow

DVC = [sys.executable, "-m", "dvc"]


def finished(store: Path, kind: str) -> set[str]:
    d = store / kind
    return {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.is_dir() else set()


def repro(project):
    res = run(DVC + ["repro"], project)
    return res.stdout + res.stderr


def test_adding_and_removing_a_load_value_reuses_every_other_cell(project, tiny_params):
    store = project / ".cells"
    repro(project)
    before_t, before_m = finished(store, "train"), finished(store, "metrics")
    assert len(before_t) == 4 and len(before_m) == 4

    tiny_params["grid"]["load"]["values"] = [1, 4, 2]
    write_params(project / "params.yaml", tiny_params)
    out = repro(project)
    assert "[train-grid] 6/6 cells done (4 reused)" in out
    assert "[compute-metrics] 6/6 cells done (4 reused)" in out
    assert finished(store, "train") > before_t and len(finished(store, "train")) == 6
    assert len(finished(store, "metrics")) == 6

    tiny_params["grid"]["load"]["values"] = [4]
    write_params(project / "params.yaml", tiny_params)
    out = repro(project)
    assert len(finished(store, "train")) == 6  # nothing new trained
    assert "cells done, " not in out.replace("(2 reused)", "")  # only reuse lines, if any


def test_a_change_for_every_cell_retrains_every_cell_and_going_back_is_free(project):
    store = project / ".cells"
    run(DVC + ["exp", "run", "-S", "noise=0.3"], project)
    assert len(finished(store, "train")) == 4
    run(DVC + ["exp", "run", "-S", "train.max_epochs=2"], project)
    assert len(finished(store, "train")) == 8  # a training setting touches every cell
    res = run(DVC + ["exp", "run", "-S", "noise=0.3", "-S", "train.max_epochs=3"], project)
    assert len(finished(store, "train")) == 8  # back to the first: no model trained
    assert len(finished(store, "metrics")) == 8
    out = res.stdout + res.stderr
    # DVC either restores the stage from its run-cache or reruns it on the cell store
    assert "Running stage 'train-grid'" not in out or "4/4 cells done (4 reused)" in out


def test_kill_9_during_train_grid_loses_nothing_finished(project, tiny_params):
    tiny_params["train"]["max_epochs"] = 12
    tiny_params["grid"]["load"]["values"] = [1, 2, 4, 8]
    write_params(project / "params.yaml", tiny_params)
    store = project / ".cells"
    proc = subprocess.Popen(DVC + ["repro"], cwd=project, env=env_with_venv(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while len(finished(store, "train")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = finished(store, "train")
    assert 2 <= len(done) < 8, "the kill should land in the middle of train-grid"
    for key in done:  # what the store calls finished is complete
        folder = store / "train" / key
        info = json.loads((folder / "info.json").read_text())
        for i in range(len(info["cell"]["seeds"])):
            torch.load(folder / f"seed_{i}.pt", weights_only=True)

    out = repro(project)
    n_done = len(done)
    assert f"({n_done} reused)" in out or f"({n_done + 1} reused)" in out, out
    assert len(finished(store, "train")) == 8
    assert not any(p.name.startswith(".") for p in (project / "models").iterdir())


def tiny(tmp_path, params, **executor):
    params = {**params, "executor": {**params["executor"], **executor},
              "store": {"path": str(tmp_path / "store")}}
    return parse_params(params)


def states(models_dir: Path) -> dict:
    out = {}
    for cell in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        for f in sorted(cell.glob("seed_*.pt")):
            out[f"{cell.name}/{f.name}"] = torch.load(f, weights_only=True)
    return out


def same_models(a: dict, b: dict):
    """Equal bit for bit (same code, same thread count, deterministic CPU kernels)."""
    assert a.keys() == b.keys()
    for k in a:
        for name in a[k]:
            assert torch.equal(a[k][name], b[k][name]), (k, name)


def test_two_local_workers_and_ray_give_the_models_of_one_worker(tmp_path, tiny_params,
                                                                monkeypatch):
    # float32 training is reproducible for a given thread count, not across thread counts,
    # and the count is part of a cell's key: every run below plans one thread per cell.
    from landscape_taxonomy.cells.executor import settings as executor_settings
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 1)
    serial = tiny(tmp_path / "a", tiny_params, workers=1)
    prepare_stage.prepare(serial, tmp_path / "prepared")
    train_stage.train(serial, tmp_path / "prepared", tmp_path / "m1")
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 2)
    two = tiny(tmp_path / "b", tiny_params, workers=2)
    train_stage.train(two, tmp_path / "prepared", tmp_path / "m2")
    same_models(states(tmp_path / "m1"), states(tmp_path / "m2"))

    pytest.importorskip("ray")
    ray_params = tiny(tmp_path / "c", tiny_params, kind="ray", num_cpus=1)
    train_stage.train(ray_params, tmp_path / "prepared", tmp_path / "m3")
    same_models(states(tmp_path / "m1"), states(tmp_path / "m3"))
    # metrics through Ray match a fresh local computation
    metrics_stage.compute_metrics(ray_params, tmp_path / "prepared", tmp_path / "m3",
                                  tmp_path / "r3.csv", tmp_path / "c3.csv", tmp_path / "cells3")
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 1)
    metrics_stage.compute_metrics(serial, tmp_path / "prepared", tmp_path / "m1",
                                  tmp_path / "r1.csv", tmp_path / "c1.csv", tmp_path / "cells1")
    assert (tmp_path / "r1.csv").read_text() == (tmp_path / "r3.csv").read_text()


def test_results_from_the_store_equal_a_fresh_computation(tmp_path, tiny_params):
    p = tiny(tmp_path, tiny_params, workers=1)
    prepare_stage.prepare(p, tmp_path / "prepared")
    train_stage.train(p, tmp_path / "prepared", tmp_path / "m")
    metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "m", tmp_path / "a.csv",
                                  tmp_path / "ca.csv", tmp_path / "cells_a")
    first = (tmp_path / "a.csv").read_text()
    # reuse: same table byte for byte
    train_stage.train(p, tmp_path / "prepared", tmp_path / "m")
    metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "m", tmp_path / "b.csv",
                                  tmp_path / "cb.csv", tmp_path / "cells_b")
    assert (tmp_path / "b.csv").read_text() == first
    # fresh: an empty store computes the same numbers
    fresh = tiny(tmp_path / "fresh", tiny_params, workers=1)
    train_stage.train(fresh, tmp_path / "prepared", tmp_path / "m2")
    metrics_stage.compute_metrics(fresh, tmp_path / "prepared", tmp_path / "m2", tmp_path / "c.csv",
                                  tmp_path / "cc.csv", tmp_path / "cells_c")
    assert (tmp_path / "c.csv").read_text() == first


def test_replaced_models_are_measured_again(tmp_path, tiny_params):
    # a store cell whose model file was replaced together with its checksums: what
    # compute-metrics reports is the new models' metrics, never the old ones'
    from landscape_taxonomy.cells.store import write_manifest

    p = tiny(tmp_path, tiny_params, workers=1)
    prepare_stage.prepare(p, tmp_path / "prepared")
    train_stage.train(p, tmp_path / "prepared", tmp_path / "m")
    metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "m", tmp_path / "a.csv",
                                  tmp_path / "ca.csv", tmp_path / "cells_a")
    cell = sorted(d for d in (tmp_path / "m").iterdir() if d.is_dir())[0]
    # the second seed's model in place of the first, checksums rewritten to match
    (cell / "seed_0.pt").write_bytes((cell / "seed_1.pt").read_bytes())
    (cell / "checksums.json").unlink()
    write_manifest(cell)
    metrics_stage.compute_metrics(p, tmp_path / "prepared", tmp_path / "m", tmp_path / "b.csv",
                                  tmp_path / "cb.csv", tmp_path / "cells_b")
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    row = a["cell"] == cell.name
    assert (a.loc[row, "cka"] != b.loc[row, "cka"]).all()  # two copies of one model now
    assert (a.loc[~row].to_numpy() == b.loc[~row].to_numpy()).all()  # the rest reused


def test_queued_experiments_run_and_are_listed(project):
    for noise in ("0.1", "0.2"):
        run(DVC + ["exp", "run", "--queue", "-S", f"noise={noise}"], project)
    run(DVC + ["queue", "start", "-j", "2"], project)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = run(DVC + ["queue", "status"], project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    shown = json.loads(run(DVC + ["exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert '"noise": 0.1' in text and '"noise": 0.2' in text
    assert '"verdict"' in text and '"F2"' in text  # reports/findings.json, the metrics


def test_the_metrics_stage_process_never_imports_torch(tmp_path, tiny_params):
    # Its workers compute; their results reach it as plain JSON (unpickling a tensor or a
    # torch scalar would import torch there: 3 s, and 1 s more at its exit).
    from conftest import write_params

    raw = {**tiny_params, "executor": {**tiny_params["executor"], "workers": 2},
           "store": {"path": str(tmp_path / "store")}}
    params, p = write_params(tmp_path / "params.yaml", raw), parse_params(raw)
    prepare_stage.prepare(p, tmp_path / "prepared")
    train_stage.train(p, tmp_path / "prepared", tmp_path / "models")
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "landscape_taxonomy.cli", "metrics",
         "--params", params, "--data", tmp_path / "prepared", "--models", tmp_path / "models",
         "--out", tmp_path / "m.csv", "--curves", tmp_path / "c.csv", "--cells",
         tmp_path / "cells", "--density", tmp_path / "d.csv"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "d.csv")) > 0  # the workers' results did arrive
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()
                if line.startswith("import time:")}
    assert "pandas" in imported and "torch" not in imported
