"""Stage rugged-convexity: the one-dimensional model (ours; rugged.py says why). DVC runs:

    python stages/rugged_convexity.py --params params.yaml --out-dir reports/rugged

It reads only the `rugged:` section of params.yaml and writes metrics.csv, phases.csv,
summary.json and figures/ there.
"""
from pathlib import Path

import typer

from landscape_taxonomy.cli import one_line_errors
from landscape_taxonomy.config import load_params


@one_line_errors
def rugged_command(params: Path = typer.Option(Path("params.yaml"), "--params",
                                               help="params.yaml (its rugged: section)"),
                   out_dir: Path = typer.Option(Path("reports/rugged"), "--out-dir",
                                                help="folder for the tables and figures")):
    """Run the 1-D rugged-convexity study and sort its cells with the study's phase rule."""
    from landscape_taxonomy import rugged  # after the pin one_line_errors sets for numpy

    summary = rugged.run(load_params(params).rugged, out_dir)
    counts = {p: n for p, n in summary["phases"].items() if n}
    typer.echo(f"rugged convexity: {summary['cells']} cells -> {out_dir}: {counts}; best test "
               f"cell in {summary.get('best_test_acc_phase')}, best phase on average "
               f"{summary.get('best_mean_test_acc_phase')} ({summary['seconds']:.1f} s)")


if __name__ == "__main__":
    typer.run(rugged_command)
