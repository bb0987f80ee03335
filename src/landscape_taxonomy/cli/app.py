"""The `landscape-taxonomy` console script: every step of the study, one command each.

    landscape-taxonomy prepare  --params params.yaml --out data/prepared
    landscape-taxonomy train    --params params.yaml --data data/prepared --out models
    landscape-taxonomy metrics  --params params.yaml --data data/prepared --models models
    landscape-taxonomy classify reports/metrics.csv --params params.yaml --out reports/phases.csv
    landscape-taxonomy findings reports/metrics.csv --phases reports/phases.csv --summary ...
    landscape-taxonomy thresholds reports/summary.json --out thresholds/baseline.json
    landscape-taxonomy plot     --metrics reports/metrics.csv --phases reports/phases.csv
    landscape-taxonomy store gc [--dry-run]   drop cells no commit or experiment refers to
    landscape-taxonomy plots-page             the offline page template of dvc plots show
    landscape-taxonomy check-params params.paper.yaml   valid, and every key dvc.yaml declares

The commands live by what they work on: compute.py (prepare, train, metrics: the
grid's stages), rugged.py (the 1-D study), report.py (classify, findings, thresholds, plot,
plots-page: tables in, tables and figures out), check_params.py, store.py; common.py holds
their one-line errors and exit codes. The stage scripts in stages/ run these same
functions, so DVC and a shell do the same work.
classify and plot also take a metrics table from elsewhere (published results, say) that
has the contract's columns.
"""

from __future__ import annotations

import typer

from . import check_params, compute, report, rugged, store

# In the order `landscape-taxonomy --help` lists them
COMMANDS = (
    ("prepare", compute.prepare_command),
    ("train", compute.train_command),
    ("metrics", compute.metrics_command),
    ("classify", report.classify_command),
    ("findings", report.findings_command),
    ("thresholds", report.thresholds_command),
    ("plot", report.plot_command),
    ("plots-page", report.plots_page_command),
    ("store", store.store_command),
    ("check-params", check_params.check_params_command),
    ("rugged", rugged.rugged_command),
)


def build() -> typer.Typer:
    cli = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Loss-landscape taxonomy: train a grid, measure it, sort it into "
                           "phases.")
    for name, command in COMMANDS:
        cli.command(name)(command)
    return cli


app = build()


if __name__ == "__main__":
    app()
