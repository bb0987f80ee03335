"""The Ray backend: connect with a deadline (Ray's own retries run for minutes in C++, where
no signal handler runs), refuse tasks no node can hold, run the tasks and cancel them on a
signal.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from ...errors import ExecutorError, Interrupted
from .guard import guarded
from .settings import host_port
from .signals import reclaim_signals


def _on_loopback(address: str) -> bool:
    if address in ("auto", "local"):
        return False
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _probe(address: str, timeout: float) -> None:
    """Wait until something accepts a TCP connection at the address, or fail in one line."""
    host, port = host_port(address)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, left))):
                return
        except OSError as e:
            why = e.strerror or type(e).__name__
            if time.monotonic() + 0.25 >= deadline:
                raise ExecutorError(
                    f"executor.address: nothing answers at {address} within "
                    f"{timeout:g}s ({why}); start the cluster there (ray start --head) or set "
                    "executor.address: null for a local Ray instance") from None
            time.sleep(0.25)


def _connect_ray(ray, address, timeout: float) -> None:
    """ray.init with a deadline. Ray retries an unanswered address for minutes inside C++,
    where no Python signal handler runs; so probe the port first, then init in a thread
    while this one waits (and stays interruptible)."""
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    target = address if address not in (None, "auto") else os.environ.get("RAY_ADDRESS")
    if target in (None, "local"):
        ray.init(address=address, **kwargs)  # starts a local instance: nothing to wait for
        return
    _probe(target, timeout)
    box, done = {}, threading.Event()

    def init():
        try:
            ray.init(address=address, **kwargs)
        except BaseException as e:  # handed to the waiting thread
            box["error"] = e
        finally:
            done.set()

    # ray.init off the main thread warns that it sets no SIGTERM handler: we have ours.
    quiet = _DropMessage("SIGTERM handler is not set")
    logger = __import__("logging").getLogger("ray._private.worker")
    logger.addFilter(quiet)
    # (An Event, not Thread.join: a join cut short by a signal marks the thread stopped.)
    th = threading.Thread(target=init, daemon=True, name="ray-connect")
    try:
        th.start()
        done.wait(timeout)
    finally:
        logger.removeFilter(quiet)
        if not done.is_set():
            _STUCK.append(done)
    if not done.is_set():
        raise ExecutorError(f"executor.address: {target} accepts connections but no Ray "
                            f"cluster answered within {timeout:g}s (executor.connect_timeout); "
                            "is it a Ray head's GCS port (default 6379)?")
    if "error" in box:
        e = box["error"]
        raise ExecutorError(f"executor.address: cannot connect to Ray at {target}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


_STUCK: list[threading.Event] = []  # ray.init calls given up on (set once they return)


def connect_abandoned() -> bool:
    """Whether a ray.init was given up on and still runs: the process should end with
    os._exit, or Ray keeps logging its retries (and may hold up the exit)."""
    return any(not done.is_set() for done in _STUCK)


class _DropMessage:
    def __init__(self, text: str):
        self.text = text

    def filter(self, record) -> bool:
        return self.text not in record.getMessage()


def _check_cluster(ray, num_cpus: float, num_gpus: float, where: str) -> None:
    """A task asking for more than any node has waits forever: refuse it up front."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, need in (("CPU", num_cpus), ("GPU", num_gpus)):
        most = max((r.get(key, 0) for r in nodes), default=0)
        if need > most:
            raise ExecutorError(f"executor.num_{key.lower()}s: {need:g} per cell, but no node "
                                f"of {where} has more than {most:g} {key}(s); no cell could "
                                "start")


def run_ray(fn, tasks, outs, address, num_cpus, num_gpus, timeout, progress, env):
    if address is None or _on_loopback(address):
        # A local instance (or one on this machine's loopback) needs no reachable node
        # address: keep Ray on loopback, or it swaps 127.0.0.1 for the node's IP (Ray reads
        # this at import; ray's own switch for single-machine use).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray  # check_settings made sure it is installed
    started = False
    refs = []
    try:
        if not ray.is_initialized():
            started = True
            _connect_ray(ray, address, timeout)
            reclaim_signals()  # ray.init sets its own SIGTERM handler
        _check_cluster(ray, num_cpus, num_gpus, f"the Ray cluster at {address}"
                       if address else "the local Ray instance")
        # env_vars reach each task's worker process before it imports torch, on any node
        options = {"runtime_env": {"env_vars": env}} if env else {}
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, **options)(guarded)
        refs = [remote.remote(fn, t) for t in tasks]
        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)
        progress.running = len(tasks)
        while pending:
            # short waits keep this thread in Python, where SIGINT/SIGTERM are handled
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            if not ready:
                continue
            i = index[ready[0]]
            try:
                outs[i] = ray.get(ready[0])
            except Exception as e:  # the task's worker or node died
                msg = f"ray task failed: {type(e).__name__}: {str(e).splitlines()[0]}"
                outs[i] = {"ok": False, "error": msg, "type": type(e).__name__,
                           "message": msg, "user": False, "trace": str(e) + "\n"}
            progress.finish(outs[i]["ok"], still_running=len(pending))
    except Interrupted:
        for r, o in zip(refs, outs):
            if o is None:
                with contextlib.suppress(Exception):
                    ray.cancel(r, force=True)
        raise
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
