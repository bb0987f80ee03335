"""The 1-D rugged-convexity study's command (its own module: the grid's stages do not
depend on it)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config.loading import load_params
from .common import PARAMS, one_line_errors


@one_line_errors
def rugged_command(params: Path = PARAMS,
                   out_dir: Path = typer.Option(Path("reports/rugged"), "--out-dir",
                                                help="folder for the tables and figures")):
    """Run the 1-D rugged-convexity study (rugged.py, our model) and sort its cells with the
    study's phase rule; reads only the params file's rugged: section."""
    cfg = load_params(params).rugged
    from .. import rugged
    summary = rugged.run(cfg, out_dir)
    counts = {p: n for p, n in summary["phases"].items() if n}
    typer.echo(f"rugged convexity: {summary['cells']} cells -> {out_dir}: {counts}; best test "
               f"cell in {summary.get('best_test_acc_phase')}, best phase on average "
               f"{summary.get('best_mean_test_acc_phase')} ({summary['seconds']:.1f} s)")
