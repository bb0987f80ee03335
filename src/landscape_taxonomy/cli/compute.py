"""The commands that compute the grid's stages: prepare, train, metrics (rugged.py holds
the 1-D study's, so an edit to either reruns only its own stages)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config.loading import load_params
from .common import PARAMS, one_line_errors


@one_line_errors
def prepare_command(params: Path = PARAMS,
                    out: Path = typer.Option(Path("data/prepared"), help="prepared-data folder")):
    """Load the dataset, draw the label noise, write tensors and a manifest."""
    p = load_params(params)  # before the imports: a bad file is told at once
    from ..pipeline.prepare import prepare
    m = prepare(p, out)
    typer.echo(f"prepared {m['dataset']}: {m['n_train']} train, {m['n_test']} test (label-noise "
               f"draws of seed {m['seed']}, for every level; each cell records its own)")


@one_line_errors
def train_command(params: Path = PARAMS,
                  data: Path = typer.Option(Path("data/prepared"), help="prepared-data folder"),
                  out: Path = typer.Option(Path("models"), help="models folder to write")):
    """Train every seed of every grid cell (reusing finished cells from the store)."""
    p = load_params(params)
    from ..cells.executor.signals import stop_with_dvc
    from ..pipeline.train import train
    stop_with_dvc()
    entries = train(p, data, out)
    typer.echo(f"trained grid: {len(entries)} cells in {out}")


@one_line_errors
def metrics_command(params: Path = PARAMS,
                    data: Path = typer.Option(Path("data/prepared"), help="prepared data"),
                    models: Path = typer.Option(Path("models"), help="models folder"),
                    out: Path = typer.Option(Path("reports/metrics.csv"), help="metrics table"),
                    curves: Path = typer.Option(Path("reports/curves.csv"), help="curve table"),
                    cells: Path = typer.Option(Path("reports/cells"), help="per-cell details"),
                    density: Path = typer.Option(Path("reports/density.csv"),
                                                 help="each cell's Hessian eigenvalue density")):
    """Measure every cell's loss landscape: losses, Hessian, mc, CKA, L2."""
    p = load_params(params)
    from ..cells.executor.signals import stop_with_dvc
    from ..pipeline.metrics import compute_metrics
    stop_with_dvc()
    table = compute_metrics(p, data, models, out, curves, cells, density)
    typer.echo(f"metrics of {len(table)} cells -> {out}")

