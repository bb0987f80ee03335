"""Atomic writes: a file or folder appears complete or not at all.

A run killed mid-write leaves only a hidden temporary next to the target
(`.<name>.tmp-<host>-<pid>-*`), which no reader ever opens. The next atomic write of that
target removes the leftovers of writers on this host that are no longer running (a
`kill -9` of a stage, say); `sweep_stale` removes every leftover where the caller knows no
other writer of the target is alive (the cell store does it under the cell's lock).
Files and folders get the modes the umask gives (`tempfile` makes them 0600/0700, which
breaks a store or an output shared by a group).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

# The hidden names atomic writes of `<name>` leave next to it while (or if killed while)
# they work: the folder being written, and the replaced one on its way out.
TEMP_TAGS = (".tmp-", ".old-")


def umask() -> int:
    """The process umask, read without changing it where Linux tells it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def _default_mode(path: Path, base: int) -> None:
    """Give a tempfile-made path the mode a plain mkdir/open would (setgid kept)."""
    keep = path.stat().st_mode & stat.S_ISGID
    os.chmod(path, (base & ~umask()) | keep)


def sweep_stale(target: str | Path, tags=TEMP_TAGS) -> None:
    """Remove what killed writers of `target` left next to it. Only call this where no
    other writer of `target` can be at work (under its lock, say)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for tag in tags:
        for p in target.parent.glob(f".{target.name}{tag}*"):
            _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"  # no "-": it separates the pid


def _writer_tag(kind: str) -> str:
    """`.tmp-<host>-<pid>-`: who is writing, so a later writer can tell a dead one's leftover
    from a live one's work."""
    return f"{kind}{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


def sweep_dead(target: str | Path) -> None:
    """Remove the leftovers next to `target` of writers on this host whose process has
    ended; a live writer's, another host's, and unnamed ones stay."""
    target = Path(target)
    for tag in TEMP_TAGS:
        prefix = f".{target.name}{tag}{_host()}-"
        for p in target.parent.glob(f"{prefix}*"):
            pid = p.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                _remove(p)


@contextlib.contextmanager
def atomic_dir(target: str | Path):
    """Yield a temporary folder; on success it replaces `target` in one rename.

    A target that exists is first moved aside under a unique hidden name and removed
    once the new one is in place, so a reader sees the old folder, nothing for an
    instant, or the new one, never a mixture, and nothing is left behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_writer_tag('.tmp-')}",
                                dir=target.parent))
    aside = []
    try:
        _default_mode(tmp, 0o777)
        yield tmp
        for _ in range(100):
            try:
                os.replace(tmp, target)  # refused while target is a non-empty folder
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR,
                                   errno.EISDIR):
                    raise
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{_writer_tag('.old-')}",
                                        dir=target.parent))
            aside.append(old)
            with contextlib.suppress(FileNotFoundError):  # another writer moved it first
                os.replace(target, old / target.name)
        else:
            raise OSError(errno.EBUSY, f"could not replace {target}: other writers keep "
                                       "recreating it")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for old in aside:
            shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_writer_tag('.tmp-')}", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def number_text(v) -> str:
    """Text that reads back as exactly `v`, for names and keys: an int as itself, a float
    as `:g` where that is exact (0.05, 1e-05, 16: today's names), else its shortest
    round-trip form (0.1000001, 1234567.0), so distinct values never share a name."""
    if isinstance(v, int):
        return str(v)
    short = f"{v:g}"
    return short if float(short) == v else repr(float(v))


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_csv(path: str | Path, frame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))
