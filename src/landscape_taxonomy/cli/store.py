"""`landscape-taxonomy store gc`: drop the cells no commit, branch, tag or experiment
refers to.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config.loading import load_params
from ..errors import ConfigError
from .common import PARAMS, one_line_errors


@one_line_errors
def store_command(action: str = typer.Argument(..., help="gc: drop unreferenced cells"),
                  params: Path = PARAMS,
                  dry_run: bool = typer.Option(False, "--dry-run",
                                               help="list what would go, remove nothing")):
    """The cell store. `store gc` removes the cells that neither the workspace outputs nor
    any commit of a branch, tag or DVC experiment refers to."""
    if action != "gc":
        raise ConfigError(f"store: unknown action {action!r}; the one there is: gc")
    from ..cells.store import CellStore, repository_root
    from ..cells.store_gc import gc

    p = load_params(params)
    repo = repository_root(Path(params).resolve().parent)
    if repo is None:
        raise ConfigError(f"store gc: {params} is not in a DVC repository")
    store = CellStore(p.store.path if Path(p.store.path).expanduser().is_absolute()
                      else repo / p.store.path)
    r = gc(store, repo, dry_run=dry_run)
    for kind, key in r.removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {kind}/{key}")
    verb = "would free" if dry_run else "freed"
    typer.echo(f"store {store.root}: {len(r.kept)} cells kept, {len(r.removed)} "
               f"{'to remove' if dry_run else 'removed'} ({verb} {r.bytes_removed / 1e6:.1f} MB; "
               f"{r.commits} commits read)")
