"""The error classes, in one place: what the CLI reports in one line (a user's input) and
what it reports as ours. Importing this module loads nothing heavy (no torch, no pandas), so
any module may raise or catch these without paying for another's imports.

    ConfigError      params.yaml, an option or a setting cannot work (exit status 2)
      ExecutorError  an executor: setting that cannot work here
    DataError        a dataset or prepared folder that cannot be read (exit status 2)
      CorruptCell    a cell store entry whose files fail their checksums
    TableError       a metrics or phases table that lacks what is needed (exit status 2)
    CurveError       a mode-connectivity curve that cannot be fitted
    CellsFailed      some grid cells raised: 2 for bad input, 1 for our bug
    Interrupted      SIGINT or SIGTERM stopped a stage: 130 or 143 (a BaseException)
"""

from __future__ import annotations

import signal
from pathlib import Path


class ConfigError(ValueError):
    """A params.yaml problem; str() is the one-line message shown to the user."""


class DataError(RuntimeError):
    """A dataset that cannot be loaded; str() is the one-line message for the user."""


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


class CurveError(RuntimeError):
    """The curve does not reproduce its endpoints: its mc would be wrong."""


class CellsFailed(RuntimeError):
    """Some cells raised; the finished ones are in the store and the next run reuses them.

    str() is one line: the first failure (a bug of ours before bad input) and where the
    logs are. `internal` tells "our code failed" (exit 1) from "your input is wrong" (2).
    """

    def __init__(self, label: str, failed: list[dict], total: int, logs: list[Path]):
        self.label, self.failed, self.total, self.logs = label, failed, total, logs
        self.internal = any(not o.get("user") for o in failed)
        first = next(i for i, o in enumerate(failed) if o.get("user") != self.internal)
        o, log = failed[first], logs[first]
        text = (o.get("message") or o["error"]).strip().splitlines()
        text = text[0] if text else ""
        cell = o["task"].cell_id
        more = (f" ({len(failed) - 1} more of {total} cells failed; logs in {log.parent})"
                if len(failed) > 1 else "")
        if self.internal:
            line = (f"internal error in cell {cell}: {o.get('type', 'Error')}: {text}; "
                    f"traceback in {log}{more}")
        else:
            line = f"{label}: cell {cell}: {text}{more or f' (log: {log})'}"
        super().__init__(line)

    @property
    def exit_code(self) -> int:
        return 1 if self.internal else 2


class CorruptCell(DataError):
    """A stored cell whose files do not match its checksums (store.on_corrupt: error)."""


class TableError(ValueError):
    """A table that cannot be used; str() is the one-line message for the user."""
