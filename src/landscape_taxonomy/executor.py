"""Fan grid cells out to workers: local processes, or tasks on a Ray cluster.

DVC runs one stage at a time, so train-grid and compute-metrics spread their cells
themselves. A task is a picklable dict handed to a top-level function that writes its
result into the cell store and returns a small summary; a task that raises is reported
as failed and the others go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Callable

from .progress import Progress


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _gpu_count() -> int:
    import torch
    return torch.cuda.device_count()


def plan_workers(workers, workers_per_gpu: int, device: str) -> list[dict]:
    """One environment per worker: GPU pinning and torch thread counts."""
    gpus = _gpu_count() if device in ("auto", "cuda") else 0
    cpus = _cpu_count()
    if workers == "auto":
        # CPU: one single-threaded process per core beat one process with every core on
        # small models (benchmarks/bench_grid.py); capped to bound memory.
        workers = gpus * workers_per_gpu if gpus else min(cpus, 8)
    threads = max(1, cpus // workers)
    envs = []
    for w in range(workers):
        env = {"OMP_NUM_THREADS": str(threads), "LT_TORCH_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str((w // workers_per_gpu) % gpus)
        envs.append(env)
    return envs


_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    By default glibc serves allocations above 128 KiB-32 MiB with fresh mmap'd pages and
    returns them on free, so every activation-sized tensor of every step pays page faults
    again: about 30% of a width-16 CNN's Hessian-vector product on CPU. Results do not
    change; peak memory stays the working set. Returns whether the setting took effect
    (only on glibc; elsewhere nothing is done).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or not sys.platform.startswith("linux"):
        return _ALLOCATOR_TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = (libc.mallopt(m_mmap_threshold, 256 << 20) == 1
              and libc.mallopt(m_trim_threshold, 1 << 30) == 1)
    except (OSError, AttributeError):  # not glibc (musl, say)
        ok = False
    _ALLOCATOR_TUNED = ok
    return ok


def _init_worker(queue):
    env = queue.get()
    os.environ.update(env)
    import torch
    torch.set_num_threads(int(env["LT_TORCH_THREADS"]))


def _guarded(fn, task):
    tune_allocator()  # in whichever process runs the task: local worker, Ray worker, this one
    try:
        return {"ok": True, "result": fn(task)}
    except Exception as e:  # reported per cell; the grid goes on
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}


def run_tasks(fn: Callable[[dict], dict], tasks: list[dict], *, kind: str = "local",
              workers="auto", workers_per_gpu: int = 1, device: str = "auto",
              address=None, num_cpus: float = 1, num_gpus: float = 0,
              label: str = "cells", total: int | None = None) -> list[dict]:
    """Run fn(task) for each task; returns [{"ok", "result" | "error", "task"}] in order."""
    progress = Progress(label, total if total is not None else len(tasks),
                        done=(total - len(tasks)) if total is not None else 0)
    if not tasks:
        progress.close()
        return []
    if kind == "ray":
        outs = _run_ray(fn, tasks, address, num_cpus, num_gpus, progress)
    else:
        envs = plan_workers(workers, workers_per_gpu, device)
        if len(envs) == 1 or len(tasks) == 1:
            outs = []
            for t in tasks:
                progress.start()
                outs.append(_guarded(fn, t))
                progress.finish(outs[-1]["ok"])
        else:
            outs = _run_pool(fn, tasks, envs, progress)
    progress.close()
    for o, t in zip(outs, tasks):
        o["task"] = t
    return outs


def _run_pool(fn, tasks, envs, progress):
    ctx = mp.get_context("spawn")  # fork after torch threads exist is unsafe
    queue = ctx.Queue()
    for env in envs:
        queue.put(env)
    outs = [None] * len(tasks)
    with cf.ProcessPoolExecutor(len(envs), mp_context=ctx, initializer=_init_worker,
                                initargs=(queue,)) as pool:
        futs = {}
        for i, t in enumerate(tasks):
            futs[pool.submit(_guarded, fn, t)] = i
        progress.running = min(len(envs), len(tasks))
        for fut in cf.as_completed(futs):
            i = futs[fut]
            try:
                outs[i] = fut.result()
            except Exception as e:  # a worker died (out of memory, killed)
                outs[i] = {"ok": False, "error": f"worker died: {type(e).__name__}: {e}"}
            progress.finish(outs[i]["ok"], still_running=min(len(envs),
                                                             sum(o is None for o in outs)))
    return outs


def _run_ray(fn, tasks, address, num_cpus, num_gpus, progress):
    if address is None:
        # A local instance needs no reachable node address: keep Ray on loopback (Ray reads
        # this at import; ray's own switch for single-machine use).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise RuntimeError("executor.kind: ray needs the optional extra: "
                           "pip install 'loss-landscape-taxonomy[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started = True
    try:
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_guarded)
        refs = [remote.remote(fn, t) for t in tasks]
        index = {r: i for i, r in enumerate(refs)}
        outs, pending = [None] * len(tasks), list(refs)
        progress.running = len(tasks)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                outs[i] = ray.get(ready[0])
            except Exception as e:  # the task's worker or node died
                outs[i] = {"ok": False, "error": f"ray task failed: {type(e).__name__}: {e}"}
            progress.finish(outs[i]["ok"], still_running=len(pending))
        return outs
    finally:
        if started:
            ray.shutdown()
