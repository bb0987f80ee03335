"""What a worker gets for one cell: everything it needs, as plain picklable values.

pipeline.train and pipeline.compute_metrics build these; executor.run_tasks hands each to a
local worker process or a Ray task (pickled, so paths are strings and configs plain dicts);
pipeline.train_task and pipeline.metrics_task run them. Nothing here reads params.yaml: the
values were parsed and validated once, by config.Params, before any task was made.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CellTask:
    key: str  # the cell's key in the store (grid.digest of everything that sets its numbers)
    cell_id: str  # this grid's name for it: logs and error messages
    store: str  # the cell store's root folder
    on_corrupt: str  # store.on_corrupt: recompute or fail
    prepared: str  # the prepared-data folder (data.Prepared)
    device: str  # train.device, resolved in the worker: auto, cpu, cuda
    vectorize: bool  # train.vectorize
    threads: int | None  # torch threads to compute with (None: leave as is; see cell_threads)
    kernels: str | None  # the CPU kernels the key holds (kernels.tag; None on a GPU)


@dataclass(frozen=True)
class TrainTask(CellTask):
    cell: dict  # grid.Cell.train_config(): arch, width, subset, noise, seeds, ...
    recipe: dict  # dataclasses.asdict(recipe.Recipe) with the cell's axis values


@dataclass(frozen=True)
class MetricsTask(CellTask):
    models: str  # the cell's folder under models/ (seed_<i>.pt, info.json, checksums)
    seed: int  # the study's seed: Hessian samples, probes, curve and CKA draws derive from it
    hessian: dict  # metrics.hessian as a dict (config.HessianConfig)
    curve: dict  # metrics.curve
    cka: dict  # metrics.cka
