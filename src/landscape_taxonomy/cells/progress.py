"""Progress of a stage's grid (tqdm): cells done of total, reused, running, failed, time left.

On a terminal it is a tqdm bar with the stage's elapsed time and ETA. Elsewhere (DVC logs,
CI) a bar would be a stream of carriage returns, so it is a plain line at the start, about
every tenth of the cells to compute, and at the end, with tqdm's ETA. The time left counts
only computed cells (reused ones take no time). It goes to stderr so stdout stays clean.
"""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

LINE = ("[{desc}] {n_fmt}/{total_fmt} cells done{reused}, {running} running, {failed} failed, "
        "~{remaining} left")
BAR = "[{desc}] {bar} {n_fmt}/{total_fmt} cells{postfix} [{elapsed}<{remaining}]"


class Progress:
    def __init__(self, label: str, total: int, done: int = 0, stream=None):
        self.label, self.total, self.reused = label, total, done
        self.done, self.failed, self.running = done, 0, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.every = max(1, math.ceil((total - done) / 10))  # plain lines: ~10% steps
        self.bar = tqdm(total=total, initial=done, desc=label, file=self.stream,
                        bar_format=BAR, dynamic_ncols=True, smoothing=0,
                        disable=not self.tty)
        self._show(force=True)

    def start(self):
        self.running += 1
        self._show()  # plain logs get no line for a start

    def finish(self, ok: bool, still_running: int | None = None):
        self.done += 1
        self.failed += 0 if ok else 1
        self.running = max(0, self.running - 1) if still_running is None else still_running
        self.bar.update(1)
        self._show(force=(self.done - self.reused) % self.every == 0
                   or self.done == self.total)

    def line(self) -> str:
        rate = 1.0 if self.done >= self.total else None  # nothing left: 0, not "?"
        return tqdm.format_meter(self.done, self.total, time.monotonic() - self.t0,
                                 prefix=self.label, initial=self.reused, bar_format=LINE,
                                 rate=rate,
                                 reused=f" ({self.reused} reused)" if self.reused else "",
                                 running=self.running, failed=self.failed)

    def _show(self, force: bool = False):
        if self.tty:
            reused = f"{self.reused} reused, " if self.reused else ""
            self.bar.set_postfix_str(f"{reused}{self.running} running, {self.failed} failed")
        elif force:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self):
        self.bar.close()
        elapsed = time.monotonic() - self.t0
        self.stream.write(f"[{self.label}] finished in {elapsed:.1f}s\n")
        self.stream.flush()
