"""The five steps of the study, each from its inputs on disk to its outputs on disk.

    prepare  -> data/prepared      train -> models/      metrics -> reports/metrics.csv
(classify and plot, which read tables only, are in report.py.)

train and metrics work cell by cell through the cell store: a cell whose key is already
there is reused, the rest fan out to the executor, and the stage output is then assembled
from the store in one atomic step. The `*_task` functions are what a worker runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from . import data as data_mod
from . import executor, grid
from .config import Params, as_dict
from .io import atomic_dir, write_csv, write_json
from .report import CONTRACT
from .store import CellStore, copy_tree
from .train import Recipe, resolve_device, train_cell


class CellsFailed(RuntimeError):
    """Some cells raised; the finished ones are in the store and the next run reuses them.

    str() is one line: the first failure (a bug of ours before bad input) and where the
    logs are. `internal` tells "our code failed" (exit 1) from "your input is wrong" (2).
    """

    def __init__(self, label: str, failed: list[dict], total: int, logs: list[Path]):
        self.label, self.failed, self.total, self.logs = label, failed, total, logs
        self.internal = any(not o.get("user") for o in failed)
        first = next(i for i, o in enumerate(failed) if o.get("user") != self.internal)
        o, log = failed[first], logs[first]
        text = (o.get("message") or o["error"]).strip().splitlines()
        text = text[0] if text else ""
        cell = o["task"]["cell_id"]
        more = (f" ({len(failed) - 1} more of {total} cells failed; logs in {log.parent})"
                if len(failed) > 1 else "")
        if self.internal:
            line = (f"internal error in cell {cell}: {o.get('type', 'Error')}: {text}; "
                    f"traceback in {log}{more}")
        else:
            line = f"{label}: cell {cell}: {text}{more or f' (log: {log})'}"
        super().__init__(line)

    @property
    def exit_code(self) -> int:
        return 1 if self.internal else 2


# -- prepare -----------------------------------------------------------------------------

def prepare(p: Params, out_dir: Path) -> dict:
    return data_mod.prepare(out_dir, dataset=p.data.dataset, root=p.data.root,
                            download=p.data.download, test_fraction=p.data.test_fraction,
                            noise_levels=grid.noise_levels(p), seed=p.seed)


# -- train -------------------------------------------------------------------------------

def recipe_of(p: Params, cell: grid.Cell) -> Recipe:
    return Recipe.from_config(p.train, lr=cell.lr, weight_decay=cell.weight_decay,
                              batch_size=cell.batch_size)


def train_key(p: Params, cell: grid.Cell, prepared: data_mod.Prepared) -> str:
    device = resolve_device(p.train.device).type
    return grid.digest("train", cell.train_config(), asdict(recipe_of(p, cell)),
                       prepared.checksum(cell.noise, cell.subset),
                       grid.code_hash(*grid.TRAIN_CODE), device, p.train.vectorize)


_PREPARED: dict[str, tuple[str, data_mod.Prepared]] = {}


def _prepared(folder: str) -> data_mod.Prepared:
    """The prepared data, loaded once per worker process (again if the folder was rewritten)."""
    stamp = (Path(folder) / "manifest.json").read_text()
    if folder not in _PREPARED or _PREPARED[folder][0] != stamp:
        _PREPARED[folder] = (stamp, data_mod.Prepared(folder))
    return _PREPARED[folder][1]


def train_task(task: dict) -> dict:
    """Worker: train every seed of one cell into the store (no-op if already there)."""
    store, key = CellStore(task["store"]), task["key"]
    if store.has("train", key):
        return json.loads((store.path("train", key) / "info.json").read_text())
    cell, prep = task["cell"], _prepared(task["prepared"])
    x, y = prep.train_set(cell["noise"], cell["subset"])
    device = resolve_device(task["device"])
    t0 = time.monotonic()
    results = train_cell(arch=cell["arch"], width=cell["width"],
                         input_shape=prep.manifest["input_shape"], n_classes=prep.n_classes,
                         x=x, y=y, recipe=Recipe(**task["recipe"]), seeds=list(cell["seeds"]),
                         device=device, vectorize=task["vectorize"])
    info = {"key": key, "cell_id": task["cell_id"], "cell": cell, "recipe": task["recipe"],
            "n_train": len(y), "device": str(device), "seconds": time.monotonic() - t0,
            "diverged": [r.diverged for r in results], "epochs": [r.epochs for r in results],
            "best_epoch": [r.best_epoch for r in results],
            "stopped_early": [r.stopped_early for r in results]}
    with store.writer("train", key) as tmp:
        for i, r in enumerate(results):
            torch.save(r.state, tmp / f"seed_{i}.pt")
        log = pd.DataFrame([{"seed": s, **row} for s, r in zip(cell["seeds"], results)
                            for row in r.log])
        log.to_csv(tmp / "log.csv", index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
    store.log_path("train", task["cell_id"]).write_text(
        f"{task['cell_id']} key={key} device={device} {info['seconds']:.1f}s "
        f"epochs={info['epochs']} diverged={info['diverged']}\n")
    return info


def executor_settings(p: Params) -> dict:
    e = p.executor
    return dict(kind=e.kind, workers=e.workers, workers_per_gpu=e.workers_per_gpu,
                device=p.train.device, address=e.address, num_cpus=e.num_cpus,
                num_gpus=e.num_gpus, connect_timeout=e.connect_timeout)


def _run(fn, tasks, p: Params, label: str, total: int, stage: str):
    store = CellStore(p.store.path)
    try:
        outs = executor.run_tasks(fn, tasks, **executor_settings(p), label=label, total=total)
    except executor.Interrupted as e:
        e.store = str(store.root)
        raise
    failed = [o for o in outs if not o["ok"]]
    if failed:
        logs = [_failure_log(store, stage, o) for o in failed]
        raise CellsFailed(label, failed, total, logs)


def _failure_log(store: CellStore, stage: str, out: dict) -> Path:
    """The failed cell's log in the store: what failed and the whole traceback."""
    task = out["task"]
    path = store.log_path(stage, task["cell_id"])
    path.write_text(f"{task['cell_id']} key={task['key']} FAILED: {out['error']}\n"
                    f"{out.get('trace') or ''}")
    return path


def train(p: Params, prepared_dir: Path, out_dir: Path) -> list[dict]:
    executor.check_settings(**executor_settings(p))  # before any work
    prep = _prepared(str(prepared_dir))
    store = CellStore(p.store.path)
    entries, tasks = [], []
    for cell in grid.cells(p):
        key = train_key(p, cell, prep)
        entries.append({"cell_id": cell.cell_id, "key": key, **asdict(cell)})
        if not store.has("train", key):
            tasks.append({"key": key, "cell_id": cell.cell_id, "cell": cell.train_config(),
                          "recipe": asdict(recipe_of(p, cell)), "prepared": str(prepared_dir),
                          "store": str(store.root), "device": p.train.device,
                          "vectorize": p.train.vectorize})
    _run(train_task, tasks, p, "train-grid", len(entries), "train")
    with atomic_dir(out_dir) as tmp:
        for e in entries:
            copy_tree(store.path("train", e["key"]), tmp / e["cell_id"])
        write_json(tmp / "index.json", {"cells": entries})
    return entries


# -- metrics -----------------------------------------------------------------------------

def metrics_task(task: dict) -> dict:
    """Worker: every metric of one cell into the store (no-op if already there)."""
    from .metrics.cell import cell_metrics

    store, key = CellStore(task["store"]), task["key"]
    if store.has("metrics", key):
        return json.loads((store.path("metrics", key) / "result.json").read_text())
    folder, prep = Path(task["models"]), _prepared(task["prepared"])
    info = json.loads((folder / "info.json").read_text())
    cell = info["cell"]
    states = [torch.load(folder / f"seed_{i}.pt", weights_only=True)
              for i in range(len(cell["seeds"]))]
    x, y = prep.train_set(cell["noise"], cell["subset"])
    device = resolve_device(task["device"])
    t0 = time.monotonic()
    res = cell_metrics(arch=cell["arch"], width=cell["width"],
                       input_shape=prep.manifest["input_shape"], n_classes=prep.n_classes,
                       states=states, diverged=info["diverged"], x_train=x, y_train=y,
                       x_test=prep.x_test, y_test=prep.y_test, hessian_cfg=task["hessian"],
                       curve_cfg=task["curve"], cka_cfg=task["cka"], seed=task["seed"],
                       device=device, vectorize=task["vectorize"])
    res.update(key=key, cell_id=task["cell_id"], train_key=info["key"], seeds=cell["seeds"],
               n_train=len(y), seconds=time.monotonic() - t0)
    with store.writer("metrics", key) as tmp:
        (tmp / "result.json").write_text(json.dumps(res, indent=1, default=float))
    store.log_path("metrics", task["cell_id"]).write_text(
        f"{task['cell_id']} key={key} {res['seconds']:.1f}s\n")
    return res


def metrics_key(p: Params, entry: dict) -> str:
    m = as_dict(p.metrics)
    return grid.digest("metrics", entry["key"], m, p.seed, grid.code_hash(*grid.METRICS_CODE),
                       resolve_device(p.train.device).type, p.train.vectorize)


def compute_metrics(p: Params, prepared_dir: Path, models_dir: Path, metrics_csv: Path,
                    curves_csv: Path, cells_dir: Path) -> pd.DataFrame:
    executor.check_settings(**executor_settings(p))  # before any work
    index = json.loads((Path(models_dir) / "index.json").read_text())["cells"]
    store = CellStore(p.store.path)
    m = as_dict(p.metrics)
    keys, tasks = [], []
    for e in index:
        key = metrics_key(p, e)
        keys.append(key)
        if not store.has("metrics", key):
            tasks.append({"key": key, "cell_id": e["cell_id"],
                          "models": str(Path(models_dir) / e["cell_id"]),
                          "prepared": str(prepared_dir), "store": str(store.root),
                          "device": p.train.device, "vectorize": p.train.vectorize,
                          "seed": p.seed, "hessian": m["hessian"],
                          "curve": m["curve"], "cka": m["cka"]})
    _run(metrics_task, tasks, p, "compute-metrics", len(index), "metrics")

    rows, curve_rows = [], []
    with atomic_dir(cells_dir) as tmp:
        for e, key in zip(index, keys):
            res = json.loads((store.path("metrics", key) / "result.json").read_text())
            (tmp / f"{e['cell_id']}.json").write_text(json.dumps(res, indent=1))
            axes = {"cell": e["cell_id"], "load_param": e["load_param"], "load": e["load"],
                    "temperature_param": e["temperature_param"],
                    "temperature": e["temperature"]}
            config = {k: e[k] for k in ("arch", "width", "subset", "noise", "batch_size", "lr",
                                        "weight_decay")}
            rows.append({**axes, **res["metrics"], **config})
            curve_rows += [{"cell": e["cell_id"], "load": e["load"],
                            "temperature": e["temperature"], **r} for r in res["curves"]]
    table = pd.DataFrame(rows)
    table = table[CONTRACT + [c for c in table.columns if c not in CONTRACT]]
    write_csv(metrics_csv, table)
    curve_cols = ["cell", "load", "temperature", "pair", "path", "t", "train_error",
                  "train_loss"]
    write_csv(curves_csv, pd.DataFrame(curve_rows, columns=curve_cols))
    return table
