"""Stage train-grid: every seed of every grid cell trained, through the cell store, into
models/. A cell whose key is already in the store is reused, the rest fan out to the
executor (running.py), and models/ is then assembled from the store in one atomic step.
`train_task` is what a worker runs, given one tasks.TrainTask.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ..cells import grid, kernels
from ..cells.executor.settings import check_settings
from ..cells.io import atomic_dir, write_json
from ..cells.store import CellStore
from ..cells.tasks import TrainTask
from ..config.schema import Params
from ..training.recipe import Recipe
from .checks import check_batch_sizes, check_subsets
from .keys import cell_threads, kernels_key, recipe_of, train_key
from .running import (
    claimed,
    executor_settings,
    load_prepared,
    resolve_device,
    run_cells,
)


def train_cell(**kw):
    """train.train_cell, imported when a cell is trained (a name here, so tests can swap it)."""
    from ..training.loop import train_cell as run
    return run(**kw)


def train_task(task: TrainTask) -> dict:
    """Worker: train every seed of one cell into the store (no-op if already there)."""
    return claimed(task, "train", "info.json", _train_locked)


def _train_locked(task: TrainTask, store: CellStore) -> dict:
    import pandas as pd
    import torch

    key = task.key
    cell, prep = task.cell, load_prepared(task.prepared)
    x, y = prep.train_set(cell["noise"], cell["subset"])
    device = resolve_device(task.device)
    t0 = time.monotonic()
    results = train_cell(arch=cell["arch"], width=cell["width"],
                         input_shape=prep.manifest["input_shape"], n_classes=prep.n_classes,
                         x=x, y=y, recipe=Recipe(**task.recipe), seeds=list(cell["seeds"]),
                         device=device, vectorize=task.vectorize)
    # No names, no timings: the store is content-addressed, and what a cell holds must not
    # depend on which grid first computed it (the cell_id is in models/index.json).
    info = {"key": key, "cell": cell, "recipe": task.recipe,
            "n_train": len(y), "label_noise": prep.label_noise(cell["noise"], cell["subset"]),
            "device": str(device), "torch_threads": torch.get_num_threads(),
            "diverged": [r.diverged for r in results], "epochs": [r.epochs for r in results],
            "best_epoch": [r.best_epoch for r in results],
            "stopped_early": [r.stopped_early for r in results],
            # which code trained them: the seeds stacked into one network, or one at a time
            # (a layer the stack does not cover, or vectorize: false)
            "training_path": sorted({r.path for r in results})}
    seconds = time.monotonic() - t0  # the store's log only: DVC outputs stay byte-identical
    with store.writer("train", key) as tmp:
        for i, r in enumerate(results):
            torch.save(r.state, tmp / f"seed_{i}.pt")
        log = pd.DataFrame([{"seed": s, **row} for s, r in zip(cell["seeds"], results)
                            for row in r.log])
        log.to_csv(tmp / "log.csv", index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
    store.log_path("train", task.cell_id).write_text(
        f"{task.cell_id} key={key} device={device} {seconds:.1f}s "
        f"epochs={info['epochs']} diverged={info['diverged']}\n")
    return info


def train(p: Params, prepared_dir: Path, out_dir: Path) -> list[dict]:
    check_settings(**executor_settings(p))  # before any work
    kernels.apply(p.train.cpu_kernels)  # before torch computes, here or in a worker
    store = CellStore(p.store.path, p.store.on_corrupt)
    store.check([prepared_dir, out_dir])
    prep = load_prepared(str(prepared_dir))
    check_subsets(p, prep)  # from the manifest: no tensors loaded here
    check_batch_sizes(p, prep)
    entries, tasks = [], []
    for cell in grid.cells(p):
        key = train_key(p, cell, prep)
        entries.append({"cell_id": cell.cell_id, "key": key, **asdict(cell)})
        if not store.has("train", key, cell.cell_id):  # verifies its checksums
            tasks.append(TrainTask(
                # absolute paths: a Ray worker may run in another working directory
                key=key, cell_id=cell.cell_id, store=str(store.root.resolve()),
                on_corrupt=p.store.on_corrupt, prepared=str(Path(prepared_dir).resolve()),
                device=p.train.device, vectorize=p.train.vectorize, threads=cell_threads(p),
                kernels=kernels_key(p), cell=cell.train_config(),
                recipe=asdict(recipe_of(p, cell))))
    run_cells(train_task, tasks, p, "train-grid", len(entries), "train")
    with atomic_dir(out_dir) as tmp:
        for e in entries:  # checksums.json travels along: compute-metrics checks it
            store.copy_out("train", e["key"], tmp / e["cell_id"], e["cell_id"])
        write_json(tmp / "index.json", {"cells": entries})
    return entries
