"""Signals and process lifetime: SIGINT/SIGTERM raise Interrupted once while workers run,
workers die with their parent, and a stage stops when the `dvc repro` that started it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ...errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_HANDLER: list = []  # the active handler of stop_on_signals, if any


@contextlib.contextmanager
def stop_on_signals():
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


def reclaim_signals() -> None:
    """Put our handler back after a library (ray.init) replaced it."""
    if _HANDLER and threading.current_thread() is threading.main_thread():
        for s in _SIGNALS:
            signal.signal(s, _HANDLER[-1])


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
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
