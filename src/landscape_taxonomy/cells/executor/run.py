"""Fan grid cells out to workers: local processes, or tasks on a Ray cluster.

DVC runs one stage at a time, so train-grid and compute-metrics spread their cells
themselves. A task is a picklable value (the pipeline's are tasks.py's dataclasses) handed
to a top-level function that writes its result into the cell store and returns a small
summary; a task that raises is reported as failed (with its traceback) and the others go on.

Faults: SIGINT and SIGTERM stop the workers (terminate, then kill after a short grace)
and raise `Interrupted`, which says how many cells finished; those are in the store and
the next run reuses them. Local workers run in a session of their own (a Ctrl-C at the
terminal reaches only the parent, which decides) and die with the parent
(PR_SET_PDEATHSIG on Linux, a watch thread elsewhere), so a `kill -9` of the stage leaves
no orphan. A worker that dies (out of memory, killed) fails only the cell it was running
and is replaced. Task functions must be importable by name (module level).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import Interrupted
from ..progress import Progress
from .guard import guarded
from .local import run_pool
from .ray_cluster import run_ray
from .settings import check_settings, plan_workers
from .signals import stop_on_signals


def run_tasks(fn: Callable[[Any], dict], tasks: list, *, kind: str = "local",
              workers="auto", workers_per_gpu: int = 1, device: str = "auto",
              address=None, num_cpus: float = 1, num_gpus: float = 0,
              connect_timeout: float = 30, label: str = "cells",
              total: int | None = None, env: dict | None = None) -> list[dict]:
    """Run fn(task) for each task; returns [{"ok", "result" | "error", "task"}] in order.
    `env`: variables every process running a task starts with (kernels.environment); this
    process must already have them.

    A failed task's entry also has "type", "message", "user" (bad input rather than a
    bug) and "trace". SIGINT/SIGTERM raise Interrupted once every worker is stopped.
    """
    check_settings(kind=kind, workers=workers, workers_per_gpu=workers_per_gpu,
                   device=device, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                   connect_timeout=connect_timeout)
    total = total if total is not None else len(tasks)
    progress = Progress(label, total, done=total - len(tasks))
    if not tasks:
        progress.close()
        return []
    outs = [None] * len(tasks)
    try:
        with stop_on_signals():
            if kind == "ray":
                run_ray(fn, tasks, outs, address, num_cpus, num_gpus, connect_timeout,
                         progress, env or {})
            else:
                envs = [{**(env or {}), **w} for w in plan_workers(workers, workers_per_gpu,
                                                                   device)]
                if len(envs) == 1 or len(tasks) == 1:
                    for i, t in enumerate(tasks):
                        progress.start()
                        outs[i] = guarded(fn, t)
                        progress.finish(outs[i]["ok"])
                else:
                    run_pool(fn, tasks, outs, envs, progress)
    except Interrupted as e:
        e.label, e.total, e.reused = label, total, progress.reused
        e.done = progress.reused + sum(1 for o in outs if o is not None and o["ok"])
        progress.stream.write("\n" if progress.tty else "")
        raise
    progress.close()
    for o, t in zip(outs, tasks):
        o["task"] = t
    return outs
