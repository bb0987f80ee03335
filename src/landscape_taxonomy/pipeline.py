"""The five steps of the study, each from its inputs on disk to its outputs on disk.

    prepare  -> data/prepared      train -> models/      metrics -> reports/metrics.csv
(classify and plot, which read tables only, are in report.py.)

train and metrics work cell by cell through the cell store: a cell whose key is already
there is reused, the rest fan out to the executor, and the stage output is then assembled
from the store in one atomic step. The `*_task` functions are what a worker runs, each
given one tasks.TrainTask or tasks.MetricsTask.

torch and pandas are imported where a cell is computed or a table written, not here: a
stage whose cells all come from the store computes their keys and assembles its output
without torch (3 s of every stage's start on 2 cores), and starts no worker.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from . import custom, executor, grid, kernels
from . import data as data_mod
from .config import ConfigError, Params, as_dict
from .data import DataError
from .io import atomic_dir, number_text, write_csv, write_json
from .recipe import Recipe
from .store import MANIFEST, CellStore, verify
from .tasks import MetricsTask, TrainTask


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
        cell = o["task"].cell_id
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
    """Write the prepared folder, or leave it untouched when it was made from the same
    inputs by the same code (DVC reruns the stage for any edit of its code, most of which
    change no byte of it). It reads neither `noise` nor the grid: the noise draws serve
    every level, so a noise change or one more load value never reruns it."""
    stamp = {"dataset": p.data.dataset, "root": p.data.root,
             "test_fraction": p.data.test_fraction, "seed": p.seed,
             "mnist1d": as_dict(p.data.mnist1d), "code": grid.code_hash("data:prepare")}
    if p.data.dataset == "mnist1d":  # its generator's code is the package's, not ours
        from importlib.metadata import version
        stamp["mnist1d_package"] = version("mnist1d")
    if custom.is_path(p.data.dataset):  # a researcher's loader: its code, so an edit reloads
        stamp["loader"] = custom.source_digest(p.data.dataset)
    kept = data_mod.reuse(out_dir, stamp)
    if kept is not None:
        return kept
    return data_mod.prepare(out_dir, dataset=p.data.dataset, root=p.data.root,
                            download=p.data.download, test_fraction=p.data.test_fraction,
                            seed=p.seed, stamp=stamp, mnist1d=as_dict(p.data.mnist1d))


# -- train -------------------------------------------------------------------------------

def check_subsets(p: Params, prep: data_mod.Prepared) -> None:
    """Before any training: every cell's subset must hold at least one sample per class (and
    two, for BatchNorm); a smaller one could only ever "diverge"."""
    n_all, k = prep.n_train, prep.n_classes
    need = max(k, 2)
    for subset in sorted({c.subset for c in grid.cells(p)}):
        n = data_mod.subset_size(n_all, subset)
        if n >= need:
            continue
        digits = 2 - math.floor(math.log10(need / n_all))  # 3 significant, rounded up
        least = math.ceil(need / n_all * 10 ** digits) / 10 ** digits
        key = "grid.load.values: subset" if p.grid.load.param == "subset" else "data.subset:"
        raise ConfigError(f"{key} {number_text(subset)} leaves {n} of {n_all} training "
                          f"samples; a cell needs at least {need} (one per class), so the "
                          f"subset must be >= {least:g}")


def check_batch_sizes(p: Params, prep: data_mod.Prepared, stage: str = "train",
                      subsets=None) -> None:
    """Before any work: no batch larger than the training set it is drawn from (a slip, or
    a grid meant for another dataset; the whole set is one batch at most). `stage`: the
    training batches (train, over the grid's cells) or the curves' (metrics, over the
    `subsets` of the trained cells), each checked by the stage that reads it."""
    if stage == "train":
        key = ("grid.temperature.values: batch_size"
               if p.grid.temperature.param == "batch_size" else "train.batch_size:")
        pairs = [(c.subset, c.batch_size) for c in grid.cells(p)]
    else:
        key = "metrics.curve.batch_size:"
        pairs = [(s, p.metrics.curve.batch_size) for s in subsets]
    for subset, b in pairs:
        n = data_mod.subset_size(prep.n_train, subset)
        if b > n:
            raise ConfigError(f"{key} {b} is larger than the {n} training samples a cell of "
                              f"this grid trains on (subset {number_text(subset)} of "
                              f"{prep.n_train}); at most {n}, the whole set")


def train_cell(**kw):
    """train.train_cell, imported when a cell is trained (a name here, so tests can swap it)."""
    from .train import train_cell as run
    return run(**kw)


def resolve_device(device: str):
    from .train import resolve_device as resolve
    return resolve(device)


def device_type(device: str) -> str:
    """resolve_device(device).type, for keys: without torch where no GPU can be present
    (executor._gpu_count looks for a driver first)."""
    if device == "auto":
        return "cuda" if executor.gpu_count() else "cpu"
    return device


def recipe_of(p: Params, cell: grid.Cell) -> Recipe:
    return Recipe.from_config(p.train, lr=cell.lr, weight_decay=cell.weight_decay,
                              batch_size=cell.batch_size)


def cell_threads(p: Params) -> int:
    """The torch thread count every cell computes with: what a worker of this executor
    gets (executor.plan_workers; Ray: num_cpus), pinned for the task wherever it runs."""
    e = p.executor
    if e.kind == "ray":
        return max(1, int(e.num_cpus))
    envs = executor.plan_workers(e.workers, e.workers_per_gpu, p.train.device)
    return int(envs[0]["LT_TORCH_THREADS"])


def threads_key(p: Params):
    """float32 results on CPU depend on the thread count (how reductions split): a cell
    trained with 1 thread is not the cell trained with 2, so the count is in the key. On a
    GPU the math does not run on CPU threads, and the key leaves it out."""
    return cell_threads(p) if device_type(p.train.device) == "cpu" else None


def runtime_key(p: Params) -> dict:
    """The libraries a cell's numbers depend on, and on a GPU which GPU and its math
    settings: in both keys, so a shared store never hands a cell computed under other
    libraries to a run that would compute other numbers. Read without importing torch
    on CPU (the metrics stage process never does)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    if device_type(p.train.device) == "cuda":
        import torch
        out.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   gpus=sorted({torch.cuda.get_device_name(i)
                                for i in range(torch.cuda.device_count())}),
                   math="deterministic, no TF32")  # train.deterministic_cuda
    return out


def kernels_key(p: Params):
    """Likewise the CPU kernels (kernels.py): AVX2 and AVX-512 sum in other orders."""
    return kernels.tag(p.train.cpu_kernels) if device_type(p.train.device) == "cpu" else None


def train_key(p: Params, cell: grid.Cell, prepared: data_mod.Prepared) -> str:
    device = device_type(p.train.device)
    return grid.digest("train", cell.train_config(), asdict(recipe_of(p, cell)),
                       prepared.checksum(cell.noise, cell.subset),
                       grid.code_hash(*grid.TRAIN_CODE), device, p.train.vectorize,
                       threads_key(p), kernels_key(p), runtime_key(p),
                       *_own_model(cell.arch))


_PREPARED: dict[str, tuple[str, data_mod.Prepared]] = {}


def _prepared(folder: str) -> data_mod.Prepared:
    """The prepared data, loaded once per worker process (again if the folder was rewritten)."""
    if not (Path(folder) / "manifest.json").is_file():
        raise DataError(f"{folder}: no prepared data here (no manifest.json); prepare it "
                        "first (landscape-taxonomy prepare, or dvc repro)")
    stamp = (Path(folder) / "manifest.json").read_text()
    if folder not in _PREPARED or _PREPARED[folder][0] != stamp:
        _PREPARED[folder] = (stamp, data_mod.Prepared(folder))
    return _PREPARED[folder][1]


def train_task(task: TrainTask) -> dict:
    """Worker: train every seed of one cell into the store (no-op if already there)."""
    store = CellStore(task.store, task.on_corrupt)
    # The cell's lock: a run sharing the store that got here first trains it, this one
    # waits and reuses it.
    with store.claim("train", task.key, task.cell_id) as done:
        if done:
            return json.loads((store.path("train", task.key) / "info.json").read_text())
        kernels.check(task.kernels)
        with pinned_threads(task.threads):
            return _train_locked(task, store)


def _train_locked(task: TrainTask, store: CellStore) -> dict:
    import pandas as pd
    import torch

    key = task.key
    cell, prep = task.cell, _prepared(task.prepared)
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
            "stopped_early": [r.stopped_early for r in results]}
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


def executor_settings(p: Params) -> dict:
    e = p.executor
    return dict(kind=e.kind, workers=e.workers, workers_per_gpu=e.workers_per_gpu,
                device=p.train.device, address=e.address, num_cpus=e.num_cpus,
                num_gpus=e.num_gpus, connect_timeout=e.connect_timeout)


def _run(fn, tasks, p: Params, label: str, total: int, stage: str):
    store = CellStore(p.store.path)
    try:
        outs = executor.run_tasks(fn, tasks, **executor_settings(p), label=label, total=total,
                                  env=kernels.environment(p.train.cpu_kernels))
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
    path = store.log_path(stage, task.cell_id)
    path.write_text(f"{task.cell_id} key={task.key} FAILED: {out['error']}\n"
                    f"{out.get('trace') or ''}")
    return path


def train(p: Params, prepared_dir: Path, out_dir: Path) -> list[dict]:
    executor.check_settings(**executor_settings(p))  # before any work
    kernels.apply(p.train.cpu_kernels)  # before torch computes, here or in a worker
    store = CellStore(p.store.path, p.store.on_corrupt)
    store.check([prepared_dir, out_dir])
    prep = _prepared(str(prepared_dir))
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
    _run(train_task, tasks, p, "train-grid", len(entries), "train")
    with atomic_dir(out_dir) as tmp:
        for e in entries:  # checksums.json travels along: compute-metrics checks it
            store.copy_out("train", e["key"], tmp / e["cell_id"], e["cell_id"])
        write_json(tmp / "index.json", {"cells": entries})
    return entries


# -- metrics -----------------------------------------------------------------------------

def metrics_task(task: MetricsTask) -> dict:
    """Worker: every metric of one cell into the store (no-op if already there)."""
    store = CellStore(task.store, task.on_corrupt)
    with store.claim("metrics", task.key, task.cell_id) as done:
        if done:
            return json.loads((store.path("metrics", task.key) / "result.json").read_text())
        kernels.check(task.kernels)
        with pinned_threads(task.threads):
            return _metrics_locked(task, store)


def _metrics_locked(task: MetricsTask, store: CellStore) -> dict:
    import torch

    from .metrics.cell import cell_metrics

    key = task.key
    folder, prep = Path(task.models), _prepared(task.prepared)
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


def metrics_key(p: Params, entry: dict, models: str | None = None) -> str:
    """`models`: the digest of the cell's model files (models_digest), so that a store
    cell whose models were replaced, checksums and all, gets measured again rather than
    matched to the old models' metrics: models/ and reports/ cannot disagree."""
    m = as_dict(p.metrics)
    return grid.digest("metrics", entry["key"], m, p.seed, grid.code_hash(*grid.METRICS_CODE),
                       device_type(p.train.device), p.train.vectorize, threads_key(p),
                       kernels_key(p), runtime_key(p), *([models] if models is not None else []))


def _own_model(arch: str) -> list:
    """A researcher's model factory's code, for the keys: an edit to it retrains."""
    digest = custom.source_digest(arch)
    return [] if digest is None else [{"model_code": digest}]


def models_digest(folder: Path) -> str:
    """sha256 of a train cell folder's checksums.json: each model file's bytes, in one."""
    import hashlib

    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()


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


def compute_metrics(p: Params, prepared_dir: Path, models_dir: Path, metrics_csv: Path,
                    curves_csv: Path, cells_dir: Path, density_csv: Path | None = None):
    import pandas as pd

    from .metrics.density import cell_density
    from .report import CONTRACT

    executor.check_settings(**executor_settings(p))  # before any work
    kernels.apply(p.train.cpu_kernels)  # before torch computes, here or in a worker
    store = CellStore(p.store.path, p.store.on_corrupt)
    store.check([prepared_dir, models_dir, cells_dir, metrics_csv, curves_csv,
                 *([density_csv] if density_csv is not None else [])])
    if not (Path(models_dir) / "index.json").is_file():
        raise DataError(f"{models_dir}: no trained grid here (no index.json); train it first "
                        "(landscape-taxonomy train, or dvc repro)")
    index = json.loads((Path(models_dir) / "index.json").read_text())["cells"]
    check_batch_sizes(p, _prepared(str(prepared_dir)), "metrics",
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
    _run(metrics_task, tasks, p, "compute-metrics", len(index), "metrics")

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
