"""What the train and metrics stages share: the prepared data (loaded once per worker), the
executor's settings, fanning the cells out and turning failures into CellsFailed with a log
per cell, and the torch thread count a cell computes with.

torch and pandas are imported where a cell is computed or a table written, not here: a
stage whose cells all come from the store computes their keys and assembles its output
without torch (3 s of every stage's start on 2 cores), and starts no worker.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..cells import kernels
from ..cells.executor.run import run_tasks
from ..cells.store import CellStore
from ..config.schema import Params
from ..errors import CellsFailed, DataError, Interrupted
from ..training import data as data_mod


def resolve_device(device: str):
    from ..training.loop import resolve_device as resolve
    return resolve(device)


_PREPARED: dict[str, tuple[str, data_mod.Prepared]] = {}


def load_prepared(folder: str) -> data_mod.Prepared:
    """The prepared data, loaded once per worker process (again if the folder was rewritten)."""
    if not (Path(folder) / "manifest.json").is_file():
        raise DataError(f"{folder}: no prepared data here (no manifest.json); prepare it "
                        "first (landscape-taxonomy prepare, or dvc repro)")
    stamp = (Path(folder) / "manifest.json").read_text()
    if folder not in _PREPARED or _PREPARED[folder][0] != stamp:
        _PREPARED[folder] = (stamp, data_mod.Prepared(folder))
    return _PREPARED[folder][1]


def executor_settings(p: Params) -> dict:
    e = p.executor
    return dict(kind=e.kind, workers=e.workers, workers_per_gpu=e.workers_per_gpu,
                device=p.train.device, address=e.address, num_cpus=e.num_cpus,
                num_gpus=e.num_gpus, connect_timeout=e.connect_timeout)


def run_cells(fn, tasks, p: Params, label: str, total: int, stage: str):
    store = CellStore(p.store.path)
    try:
        outs = run_tasks(fn, tasks, **executor_settings(p), label=label, total=total,
                                  env=kernels.environment(p.train.cpu_kernels))
    except Interrupted as e:
        e.store = str(store.root)
        raise
    failed = [o for o in outs if not o["ok"]]
    if failed:
        logs = [_failure_log(store, stage, o) for o in failed]
        raise CellsFailed(label, failed, total, logs)


def _failure_log(store: CellStore, stage: str, out: dict) -> Path:
    """The failed cell's log in the store: what failed and the whole traceback."""
    task = out["task"]
    path = store.log_path(stage, task.cell_id)
    path.write_text(f"{task.cell_id} key={task.key} FAILED: {out['error']}\n"
                    f"{out.get('trace') or ''}")
    return path


@contextlib.contextmanager
def pinned_threads(n: int | None):
    """Compute with exactly n torch threads (the count the cell's key holds), in a pool
    worker or in this process alike; None leaves the count as it is."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def claimed(task, kind: str, result: str, compute) -> dict:
    """A worker's one cell: under the cell's lock (a run sharing the store that got there
    first computes it, this one waits and reuses it), the stored `result` file if the cell
    is done, else compute(task, store) with the key's CPU kernels and thread count."""
    store = CellStore(task.store, task.on_corrupt)
    with store.claim(kind, task.key, task.cell_id) as done:
        if done:
            return json.loads((store.path(kind, task.key) / result).read_text())
        kernels.check(task.kernels)
        with pinned_threads(task.threads):
            return compute(task, store)
