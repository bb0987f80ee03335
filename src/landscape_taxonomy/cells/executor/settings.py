"""The executor: section checked before any work (one line per bad key), and how many local
workers with how many threads each, and which GPU each, a machine gets.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from ...errors import ExecutorError


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# What a GPU driver puts on Linux (NVIDIA's, AMD's ROCm): without any of them torch can see
# no GPU, so a stage need not import torch (3 s) to learn that.
_DRIVER_PATHS = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd",
                 "/dev/dxg")


def _gpu_count() -> int:
    if sys.platform.startswith("linux") and not any(map(os.path.exists, _DRIVER_PATHS)):
        return 0
    import torch
    return torch.cuda.device_count()


def gpu_count() -> int:
    """How many GPUs torch would see here (0 without importing torch where no driver is)."""
    return _gpu_count()


def _has_ray() -> bool:
    return importlib.util.find_spec("ray") is not None


def check_settings(*, kind: str = "local", workers="auto", workers_per_gpu: int = 1,
                   device: str = "auto", address=None, num_cpus: float = 1,
                   num_gpus: float = 0, connect_timeout: float = 30) -> None:
    """Refuse executor settings that cannot work, before any work starts (one line each,
    naming the key). More workers than cores is allowed (they share the cores)."""
    def bad(key, text, value):
        raise ExecutorError(f"executor.{key}: {text}, got {value!r}")

    def number(v):
        return isinstance(v, int | float) and not isinstance(v, bool)

    if kind not in ("local", "ray"):
        bad("kind", "must be local or ray", kind)
    if workers != "auto" and not (isinstance(workers, int) and not isinstance(workers, bool)
                                  and workers >= 1):
        bad("workers", "must be an integer >= 1 or auto", workers)
    if not (isinstance(workers_per_gpu, int) and not isinstance(workers_per_gpu, bool)
            and workers_per_gpu >= 1):
        bad("workers_per_gpu", "must be an integer >= 1", workers_per_gpu)
    if not (number(num_cpus) and num_cpus >= 0):
        bad("num_cpus", "must be a number >= 0", num_cpus)
    if not (number(num_gpus) and num_gpus >= 0):
        bad("num_gpus", "must be a number >= 0", num_gpus)
    if not (number(connect_timeout) and connect_timeout > 0):
        bad("connect_timeout", "must be a number of seconds > 0", connect_timeout)
    if address is not None and not (isinstance(address, str) and address.strip()):
        bad("address", "must be host:port, ray://host:port, auto or null", address)
    if device == "cuda" and _gpu_count() == 0:
        raise ExecutorError("train.device: cuda was asked for but torch sees no CUDA device "
                            "(use auto or cpu)")
    if kind != "ray":
        return
    if not _has_ray():
        raise ExecutorError("executor.kind: ray needs Ray, which is not installed: "
                            "pip install 'loss-landscape-taxonomy[ray]' (or kind: local)")
    if address not in (None, "auto", "local"):
        host_port(address)  # well formed
    if num_gpus > 0 and address in (None, "local") and _gpu_count() == 0:
        raise ExecutorError(f"executor.num_gpus: {num_gpus:g} per cell, but the local Ray "
                            "instance would have no GPU (torch sees no CUDA device), so no "
                            "cell could ever start; use 0")


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


def host_port(address: str) -> tuple[str, int]:
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(f"executor.address: must be host:port, ray://host:port, auto or "
                            f"null, got {address!r}")
    return host.strip("[]"), int(port)
