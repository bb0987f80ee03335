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

import contextlib
import ctypes
import importlib.util
import multiprocessing.connection as mpc
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError
from .progress import Progress

GRACE_S = 3.0  # between SIGTERM and SIGKILL when stopping workers


class ExecutorError(ConfigError):
    """An executor: setting that cannot work here; str() is one line naming the key."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: workers are stopped, finished cells are in the store.

    A BaseException (like KeyboardInterrupt), so no `except Exception` swallows it.
    """

    def __init__(self, signum: int, label: str = "cells", done: int = 0, total: int = 0,
                 reused: int = 0, store: str | None = None):
        super().__init__(signum)
        self.signum, self.label, self.done, self.total = signum, label, done, total
        self.reused, self.store = reused, store

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        where = f" {self.store}" if self.store else ""
        new = self.done - self.reused
        return (f"interrupted by {name}: {self.label}: {self.done} of {self.total} cells "
                f"finished ({new} new, {self.reused} reused) and kept in the store{where}; "
                "the next run reuses them")


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
        _host_port(address)  # well formed
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


def _guarded(fn, task):
    tune_allocator()  # in whichever process runs the task: local worker, Ray worker, this one
    try:
        return {"ok": True, "result": fn(task)}
    except Exception as e:  # reported per cell; the grid goes on
        full = _disk_full(e, getattr(task, "store", None))
        if full:  # torch reports it as "[enforce fail at inline_container.cc…]"
            return {"ok": False, "error": full, "type": "OSError", "message": full,
                    "user": True, "trace": traceback.format_exc()}
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "type": type(e).__name__,
                "message": str(e), "user": _is_user_error(e), "trace": traceback.format_exc()}


FULL_BELOW = 64 << 20  # free bytes under which a failed write is read as a full disk


def _disk_full(e: Exception, store: str | None) -> str | None:
    """The line for a cell that failed because the store's file system is full (ENOSPC, or
    a failed write with almost nothing free: torch's writer says neither), else None."""
    import errno
    import shutil

    if store is None:
        return None
    try:
        free = shutil.disk_usage(store).free
    except OSError:
        return None
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or free < FULL_BELOW:
        return (f"no space left on device under {store} ({free / 1e6:.1f} MB free): free "
                "some space, or point store.path at another file system")
    return None


def _is_user_error(e: Exception) -> bool:
    """Bad input (params, data) rather than a failure of our code."""
    from .data import DataError
    return isinstance(e, ConfigError | DataError)


# -- signals -----------------------------------------------------------------------------

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_HANDLER: list = []  # the active handler of _stop_on_signals, if any


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM raise Interrupted once; later ones, while stopping, are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread: leave them to the caller
        return
    hit = []

    def handler(signum, frame):
        if hit:
            return  # already stopping: let the clean-up finish (it is bounded)
        hit.append(signum)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in _SIGNALS}
    _HANDLER.append(handler)
    try:
        yield
    finally:
        _HANDLER.remove(handler)
        for s, h in old.items():
            signal.signal(s, h)


def _reclaim_signals() -> None:
    """Put our handler back after a library (ray.init) replaced it."""
    if _HANDLER and threading.current_thread() is threading.main_thread():
        for s in _SIGNALS:
            signal.signal(s, _HANDLER[-1])


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
        with _stop_on_signals():
            if kind == "ray":
                _run_ray(fn, tasks, outs, address, num_cpus, num_gpus, connect_timeout,
                         progress, env or {})
            else:
                envs = [{**(env or {}), **w} for w in plan_workers(workers, workers_per_gpu,
                                                                   device)]
                if len(envs) == 1 or len(tasks) == 1:
                    for i, t in enumerate(tasks):
                        progress.start()
                        outs[i] = _guarded(fn, t)
                        progress.finish(outs[i]["ok"])
                else:
                    _run_pool(fn, tasks, outs, envs, progress)
    except Interrupted as e:
        e.label, e.total, e.reused = label, total, progress.reused
        e.done = progress.reused + sum(1 for o in outs if o is not None and o["ok"])
        progress.stream.write("\n" if progress.tty else "")
        raise
    progress.close()
    for o, t in zip(outs, tasks):
        o["task"] = t
    return outs


# -- local worker processes --------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Make this process end when its parent does, however the parent ends."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a running process, from /proc; None once it has ended
    (a zombie counts as ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
    return None if fields[0] in ("Z", "X") else (int(fields[1]), fields[19])


def _is_dvc(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # `dvc ...` or `python -m dvc ...`
    return any(os.path.basename(a) in (b"dvc", b"dvc.exe") for a in argv[:3])


def stop_with_dvc() -> bool:
    """Stop this stage, as SIGTERM does (workers stopped, finished cells kept, exit 143),
    when the `dvc repro` that started it ends: DVC passes Ctrl-C on (the terminal sends it
    to the whole group) but not a SIGTERM or kill -9 of its own process, and the stage would
    run on with nobody to record its outputs. Looks up to three ancestors (DVC runs the
    command through a shell) on Linux; returns whether a DVC process is being watched. A
    thread polls it: PR_SET_PDEATHSIG would fire when the parent's thread ends, and only
    for the direct parent."""
    if not sys.platform.startswith("linux"):
        return False
    pid, me = os.getppid(), os.getpid()
    for _ in range(3):
        if pid <= 1:
            return False
        if _is_dvc(pid):
            break
        stat = _proc_stat(pid)
        if stat is None:
            return False
        pid = stat[0]
    else:
        return False
    born = _proc_stat(pid)
    if born is None:
        return False

    def watch():
        while (_proc_stat(pid) or (0, None))[1] == born[1]:  # the same process, still running
            time.sleep(0.5)
        os.kill(me, signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="dvc-watch").start()
    return True


def _worker_entry() -> None:
    """A local worker process: `python -c ...` with its end of a socket pair as argv[1]."""
    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent(parent_pid)
    conn = mpc.Connection(fd)
    sys.path[:] = conn.recv()  # the parent's: task functions are imported by name
    import torch
    torch.set_num_threads(int(os.environ["LT_TORCH_THREADS"]))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:  # a polite stop: every result is sent, every file written
            # os._exit: Python's own shutdown with torch loaded takes about a second, twice
            # per stage, for nothing to save
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        fn, task = msg
        out = _guarded(fn, task)
        try:
            data = pickle.dumps(out)  # by value: no shared memory or fds to outlive us
        except Exception as e:
            data = pickle.dumps({"ok": False, "error": f"result not picklable: {e}",
                                 "type": type(e).__name__, "message": str(e), "user": False,
                                 "trace": traceback.format_exc()})
        conn.send_bytes(data)


_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Worker:
    """One worker process and its pipe. It runs in a session of its own, so a Ctrl-C at
    the terminal reaches only the parent, which decides; and it dies with the parent."""

    def __init__(self, env: dict):
        self.env, self.index = env, None  # index: the task it runs now
        mine, theirs = socket.socketpair()
        code = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
                "from landscape_taxonomy.executor import _worker_entry; _worker_entry()")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno()), str(os.getpid())],
                env={**os.environ, **env}, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            theirs.close()
        self.conn = mpc.Connection(mine.detach())
        self.conn.send(list(sys.path))

    def send(self, fn, task, index: int):
        self.index = index
        with contextlib.suppress(OSError):  # it just died: its pipe's EOF reports that
            self.conn.send((fn, task))

    def receive(self) -> dict | None:
        """The result it sent, or None if it died."""
        try:
            return pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None

    def how_it_died(self) -> str:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "closed its pipe"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exit status {code}"


def _stop_workers(workers: list[_Worker], polite: bool) -> None:
    """End every worker: ask (polite), then SIGTERM, then SIGKILL after GRACE_S."""
    def wait_all(deadline):
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(max(0.0, deadline - time.monotonic()))

    if polite:
        for w in workers:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        wait_all(time.monotonic() + GRACE_S)
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
    wait_all(time.monotonic() + GRACE_S)
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        w.conn.close()


def _run_pool(fn, tasks, outs, envs, progress):
    todo = deque(range(len(tasks)))
    workers: list[_Worker] = []
    polite = False
    try:
        for env in envs[:len(tasks)]:
            workers.append(_Worker(env))
            workers[-1].send(fn, tasks[todo[0]], todo.popleft())
        progress.running = len(workers)
        while any(w.index is not None for w in workers):
            ready = set(mpc.wait([w.conn for w in workers if w.index is not None]))
            for k, w in enumerate(workers):
                if w.index is None or w.conn not in ready:
                    continue
                out = w.receive()
                if out is None:  # the worker died mid-cell: a fresh one takes its place
                    out = _died(w)
                    w.conn.close()
                    if todo:
                        workers[k] = _Worker(w.env)
                outs[w.index], w.index = out, None
                w = workers[k]
                if todo and not w.conn.closed:
                    w.send(fn, tasks[todo[0]], todo.popleft())
                progress.finish(out["ok"],
                                still_running=sum(x.index is not None for x in workers))
        polite = True
    finally:
        _stop_workers(workers, polite=polite)


def _died(w: _Worker) -> dict:
    msg = f"worker died ({w.how_it_died()}) while running this cell"
    return {"ok": False, "error": msg, "type": "WorkerDied", "message": msg, "user": False,
            "trace": msg + "\n"}


# -- Ray ---------------------------------------------------------------------------------

def _host_port(address: str) -> tuple[str, int]:
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(f"executor.address: must be host:port, ray://host:port, auto or "
                            f"null, got {address!r}")
    return host.strip("[]"), int(port)


def _on_loopback(address: str) -> bool:
    if address in ("auto", "local"):
        return False
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _probe(address: str, timeout: float) -> None:
    """Wait until something accepts a TCP connection at the address, or fail in one line."""
    host, port = _host_port(address)
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


def _run_ray(fn, tasks, outs, address, num_cpus, num_gpus, timeout, progress, env):
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
            _reclaim_signals()  # ray.init sets its own SIGTERM handler
        _check_cluster(ray, num_cpus, num_gpus, f"the Ray cluster at {address}"
                       if address else "the local Ray instance")
        # env_vars reach each task's worker process before it imports torch, on any node
        options = {"runtime_env": {"env_vars": env}} if env else {}
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, **options)(_guarded)
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
