"""One progress line for a grid: cells done of total, running, failed, time left.

On a terminal the line redraws in place; otherwise (DVC logs, CI) each update is a plain
line. It goes to stderr so stdout stays clean for anything piped.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, done: int = 0, stream=None):
        self.label, self.total, self.reused = label, total, done
        self.done, self.failed, self.running = done, 0, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self._emit()

    def start(self):
        self.running += 1
        if self.tty:  # plain logs get a line per finished cell only
            self._emit()

    def finish(self, ok: bool, still_running: int | None = None):
        self.done += 1
        self.failed += 0 if ok else 1
        self.running = max(0, self.running - 1) if still_running is None else still_running
        self._emit()

    def eta(self) -> str:
        computed = self.done - self.reused
        left = self.total - self.done
        if computed <= 0 or left <= 0:
            return "?" if left else "0s"
        secs = (time.monotonic() - self.t0) / computed * left
        return f"{int(secs // 60)}m{int(secs % 60):02d}s" if secs >= 60 else f"{secs:.0f}s"

    def line(self) -> str:
        s = f"[{self.label}] {self.done}/{self.total} cells done"
        if self.reused:
            s += f" ({self.reused} reused)"
        s += f", {self.running} running, {self.failed} failed, ~{self.eta()} left"
        return s

    def _emit(self):
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
        elapsed = time.monotonic() - self.t0
        self.stream.write(f"[{self.label}] finished in {elapsed:.1f}s\n")
        self.stream.flush()
