"""One task in whichever process runs it (a local worker, a Ray worker, this one): its result,
or its failure as a record (bad input or our bug, a full disk said as such), never a raise.
"""

from __future__ import annotations

import ctypes
import sys
import traceback

from ...errors import ConfigError

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


def guarded(fn, task):
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
    from ...errors import DataError
    return isinstance(e, ConfigError | DataError)
