"""What every command shares: the --params option, and one-line errors with exit codes (2 for
a user's input, 1 for a bug of ours with its traceback in a log, 130/143 on signals).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import typer

from ..cells import kernels
from ..errors import CellsFailed, ConfigError, DataError, Interrupted, TableError

_PACKAGE = __package__.rpartition(".")[0]  # landscape_taxonomy

PARAMS = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read")


def one_line_errors(fn):
    """Known user errors end the command with one line on stderr and exit status 2; failed
    cells with 2 (bad input) or 1 (our code failed); SIGINT/SIGTERM with 130/143."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        kernels.pin_numpy()  # before anything loads numpy, which reads it once (kernels.py)
        try:
            return fn(*args, **kwargs)
        except BaseException as e:  # Interrupted is a BaseException
            if isinstance(e, Interrupted):
                typer.echo(str(e), err=True)
                _exit(e.exit_code)
            if isinstance(e, CellsFailed):
                typer.echo(str(e) if e.internal else f"error: {e}", err=True)
                _exit(e.exit_code)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if not isinstance(e, USER_ERRORS):  # a bug of ours: say so, keep the trace
                typer.echo(_internal(e), err=True)
                _exit(1)
            typer.echo(f"error: {e}", err=True)
            _exit(2)
    return wrapper


def _internal(e: BaseException) -> str:
    """The line for an error of our code: its type and message, and the log file that keeps
    its traceback (the temporary folder: a command may run where nothing else is writable)."""
    import tempfile
    import time
    import traceback

    folder = Path(tempfile.gettempdir()) / "landscape-taxonomy"
    text = "".join(traceback.format_exception(e))
    try:
        folder.mkdir(exist_ok=True)
        log = folder / f"internal-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        log.write_text(f"{' '.join(sys.argv)}\n{text}")
        where = f"traceback in {log}"
    except OSError:
        sys.stderr.write(text)
        where = "traceback above"
    first = (str(e).strip().splitlines() or [""])[0]
    return f"internal error: {type(e).__name__}: {first}; {where}"


# Bad params, data or tables: one line and exit status 2. Anything else is a bug of ours.
USER_ERRORS = (ConfigError, DataError, TableError)


def _exit(code: int):
    # the Ray backend only where a stage loaded it (not importing it keeps commands quick)
    ray_cluster = sys.modules.get(f"{_PACKAGE}.cells.executor.ray_cluster")
    if ray_cluster is not None and ray_cluster.connect_abandoned():
        sys.stdout.flush()  # a Ray connection still retrying: do not wait for it
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
