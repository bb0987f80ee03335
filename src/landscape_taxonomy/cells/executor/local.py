"""Local worker processes: each in a session of its own (a Ctrl-C at the terminal reaches only
the parent, which decides), dying with the parent, fed one task at a time over a pipe. A
worker that dies fails only the cell it was running and is replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection as mpc
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque

from .guard import guarded
from .signals import die_with_parent

GRACE_S = 3.0  # between SIGTERM and SIGKILL when stopping workers


def _worker_entry() -> None:
    """A local worker process: `python -c ...` with its end of a socket pair as argv[1]."""
    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    die_with_parent(parent_pid)
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
        out = guarded(fn, task)
        try:
            data = pickle.dumps(out)  # by value: no shared memory or fds to outlive us
        except Exception as e:
            data = pickle.dumps({"ok": False, "error": f"result not picklable: {e}",
                                 "type": type(e).__name__, "message": str(e), "user": False,
                                 "trace": traceback.format_exc()})
        conn.send_bytes(data)


# src/, where landscape_taxonomy is: a worker imports it as this process does
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


class _Worker:
    """One worker process and its pipe. It runs in a session of its own, so a Ctrl-C at
    the terminal reaches only the parent, which decides; and it dies with the parent."""

    def __init__(self, env: dict):
        self.env, self.index = env, None  # index: the task it runs now
        mine, theirs = socket.socketpair()
        code = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
                "from landscape_taxonomy.cells.executor.local import _worker_entry; "
                "_worker_entry()")
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


def run_pool(fn, tasks, outs, envs, progress):
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
