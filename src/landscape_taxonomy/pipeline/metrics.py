"""Stage compute-metrics: every trained cell measured (losses, Hessian, mode connectivity,
CKA, L2), through the cell store, into reports/metrics.csv, curves.csv, density.csv and
reports/cells/. `metrics_task` is what a worker runs, given one tasks.MetricsTask.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..cells import kernels
from ..cells.executor.settings import check_settings
from ..cells.io import atomic_dir, write_csv
from ..cells.store import CellStore, verify
from ..cells.tasks import MetricsTask
from ..config.loading import as_dict
from ..config.schema import Params
from ..errors import DataError
from .checks import check_batch_sizes
from .keys import cell_threads, kernels_key, metrics_key, models_digest
from .running import (
    claimed,
    executor_settings,
    load_prepared,
    resolve_device,
    run_cells,
)


def metrics_task(task: MetricsTask) -> dict:
    """Worker: every metric of one cell into the store (no-op if already there)."""
    return claimed(task, "metrics", "result.json", _metrics_locked)


def _metrics_locked(task: MetricsTask, store: CellStore) -> dict:
    import torch

    from ..metrics.cell import cell_metrics

    key = task.key
    folder, prep = Path(task.models), load_prepared(task.prepared)
    info = json.loads((folder / "info.json").read_text())
    cell = info["cell"]
    states = [torch.load(folder / f"seed_{i}.pt", weights_only=True)
              for i in range(len(cell["seeds"]))]
    x, y = prep.train_set(cell["noise"], cell["subset"])
    device = resolve_device(task.device)
    t0 = time.monotonic()
    res = cell_metrics(arch=cell["arch"], width=cell["width"],
                       input_shape=prep.manifest["input_shape"], n_classes=prep.n_classes,
                       states=states, diverged=info["diverged"], x_train=x, y_train=y,
                       x_test=prep.x_test, y_test=prep.y_test, hessian_cfg=task.hessian,
                       curve_cfg=task.curve, cka_cfg=task.cka, seed=task.seed,
                       device=device, vectorize=task.vectorize)
    res.update(key=key, train_key=info["key"], seeds=cell["seeds"],
               n_train=len(y))
    seconds = time.monotonic() - t0  # the store's log only: DVC outputs stay byte-identical
    text = json.dumps(res, indent=1, default=float)
    with store.writer("metrics", key) as tmp:
        (tmp / "result.json").write_text(text)
    store.log_path("metrics", task.cell_id).write_text(
        f"{task.cell_id} key={key} {seconds:.1f}s\n")
    # What the store holds, as a reuse reads it: plain JSON values, so unpickling the result
    # in the stage process does not import torch (3 s, and 1 s more at its exit)
    return json.loads(text)


def check_models(folder: Path) -> None:
    """A train-grid cell folder must match the checksums train-grid wrote into it."""
    problem = verify(folder) if folder.is_dir() else "the folder is missing"
    if problem is not None:
        raise DataError(f"{folder}: {problem}; it no longer holds what train-grid wrote: "
                        "rerun train-grid (dvc repro -f train-grid)")


def compute_metrics(p: Params, prepared_dir: Path, models_dir: Path, metrics_csv: Path,
                    curves_csv: Path, cells_dir: Path, density_csv: Path | None = None):
    import pandas as pd

    from ..metrics.curvature.density import cell_density
    from ..report.stages import CONTRACT

    check_settings(**executor_settings(p))  # before any work
    kernels.apply(p.train.cpu_kernels)  # before torch computes, here or in a worker
    store = CellStore(p.store.path, p.store.on_corrupt)
    store.check([prepared_dir, models_dir, cells_dir, metrics_csv, curves_csv,
                 *([density_csv] if density_csv is not None else [])])
    if not (Path(models_dir) / "index.json").is_file():
        raise DataError(f"{models_dir}: no trained grid here (no index.json); train it first "
                        "(landscape-taxonomy train, or dvc repro)")
    index = json.loads((Path(models_dir) / "index.json").read_text())["cells"]
    check_batch_sizes(p, load_prepared(str(prepared_dir)), "metrics",
                      sorted({float(e["subset"]) for e in index}))
    m = as_dict(p.metrics)
    keys, tasks = [], []
    for e in index:
        check_models(Path(models_dir) / e["cell_id"])  # then its digest is its models'
        key = metrics_key(p, e, models_digest(Path(models_dir) / e["cell_id"]))
        keys.append(key)
        if not store.has("metrics", key, e["cell_id"]):  # verifies its checksums
            tasks.append(MetricsTask(
                key=key, cell_id=e["cell_id"], store=str(store.root.resolve()),
                on_corrupt=p.store.on_corrupt, prepared=str(Path(prepared_dir).resolve()),
                device=p.train.device, vectorize=p.train.vectorize, threads=cell_threads(p),
                kernels=kernels_key(p), models=str((Path(models_dir) / e["cell_id"]).resolve()),
                seed=p.seed,
                hessian=m["hessian"], curve=m["curve"], cka=m["cka"]))
    run_cells(metrics_task, tasks, p, "compute-metrics", len(index), "metrics")

    rows, curve_rows, density_rows = [], [], []
    with atomic_dir(cells_dir) as tmp:
        for e, key in zip(index, keys):
            res = json.loads(store.read_text("metrics", key, "result.json", e["cell_id"]))
            res["cell_id"] = e["cell_id"]  # this grid's name for it
            (tmp / f"{e['cell_id']}.json").write_text(json.dumps(res, indent=1))
            axes = {"cell": e["cell_id"], "load_param": e["load_param"], "load": e["load"],
                    "temperature_param": e["temperature_param"],
                    "temperature": e["temperature"]}
            config = {k: e[k] for k in ("arch", "width", "subset", "noise", "batch_size", "lr",
                                        "weight_decay")}
            rows.append({**axes, **res["metrics"], **config})
            where = {"cell": e["cell_id"], "load": e["load"], "temperature": e["temperature"]}
            curve_rows += [{**where, **r} for r in res["curves"]]
            spectrum = cell_density(res["per_model"])
            if spectrum is not None:
                # plot data, kept in git like curves.csv: 5 significant digits
                density_rows += [{**where, "eigenvalue": float(f"{g:.5g}"),
                                  "density": float(f"{d:.5g}")} for g, d in zip(*spectrum)]
    table = pd.DataFrame(rows)
    table = table[CONTRACT + [c for c in table.columns if c not in CONTRACT]]
    write_csv(metrics_csv, table)
    curve_cols = ["cell", "load", "temperature", "pair", "path", "t", "train_error",
                  "train_loss"]
    write_csv(curves_csv, pd.DataFrame(curve_rows, columns=curve_cols))
    if density_csv is not None:
        write_csv(density_csv, pd.DataFrame(density_rows, columns=[
            "cell", "load", "temperature", "eigenvalue", "density"]))
    return table
