"""The keys a cell's results go by in the store: everything that determines them (the cell's
config, the data's checksum, the code hash of its worker, device, threads, CPU kernels,
library versions), and nothing that does not (names, timestamps).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..cells import grid, kernels
from ..cells.executor.settings import gpu_count, plan_workers
from ..cells.store import MANIFEST
from ..config.loading import as_dict
from ..config.schema import Params
from ..training import custom
from ..training import data as data_mod
from ..training.recipe import Recipe


def device_type(device: str) -> str:
    """resolve_device(device).type, for keys: without torch where no GPU can be present
    (settings._gpu_count looks for a driver first)."""
    if device == "auto":
        return "cuda" if gpu_count() else "cpu"
    return device


def recipe_of(p: Params, cell: grid.Cell) -> Recipe:
    return Recipe.from_config(p.train, lr=cell.lr, weight_decay=cell.weight_decay,
                              batch_size=cell.batch_size)


def cell_threads(p: Params) -> int:
    """The torch thread count every cell computes with: what a worker of this executor
    gets (plan_workers; Ray: num_cpus), pinned for the task wherever it runs."""
    e = p.executor
    if e.kind == "ray":
        return max(1, int(e.num_cpus))
    envs = plan_workers(e.workers, e.workers_per_gpu, p.train.device)
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
