"""The commands on tables: classify, findings, thresholds, plot, plots-page. They read
tables only (ours or a published study's) and never import torch.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config.loading import load_phase_params, updated
from ..errors import ConfigError
from .common import one_line_errors


def _threshold(name: str):
    return typer.Option(None, f"--{name}-threshold",
                        help=f"a number, or auto; overrides phase.{name.replace('-', '_')}"
                             "_threshold of --params")


LOAD_COL = typer.Option(None, "--load-col", help="column holding the load axis (e.g. width)")


TEMPERATURE_COL = typer.Option(None, "--temperature-col",
                               help="column holding the temperature axis (e.g. batch_size)")


@one_line_errors
def classify_command(table: Path = typer.Argument(..., help="metrics table (CSV)"),
                     params: Path = typer.Option(None, "--params", help=(
                         "params.yaml, or one with only a phase: section; without it every "
                         "threshold is auto")),
                     out: Path = typer.Option(Path("reports/phases.csv"), help="phases table"),
                     summary: Path = typer.Option(None, help="also write summary JSON here"),
                     correlations: Path = typer.Option(
                         None, help="also write each metric's Spearman rho with test "
                                    "accuracy here (CSV)"),
                     train_loss_threshold: str = _threshold("train-loss"),
                     mc_threshold: str = _threshold("mc"),
                     cka_threshold: str = _threshold("cka"),
                     thresholds_from: Path = typer.Option(
                         None, "--thresholds-from",
                         help="JSON file of thresholds (a summary.json, or what `thresholds` "
                              "writes) for those left at auto; overrides phase.thresholds_from"),
                     thresholds_dir: Path = typer.Option(
                         None, "--thresholds-dir",
                         help="refuse a thresholds file outside this folder (the stage's DVC "
                              "dep, so that editing the file reruns it)"),
                     cells: Path = typer.Option(
                         None, "--cells", help="compute-metrics' reports/cells: each cell's "
                                               "per-sample test hits, for a paired SE of "
                                               "IV-B's lead over IV-A"),
                     load_col: str = LOAD_COL, temperature_col: str = TEMPERATURE_COL):
    """Sort each cell of a metrics table into phase I, II, III, IV-A or IV-B."""
    from ..report.tables import check_out_file
    for path, option in ((out, "--out"), (summary, "--summary"),
                         (correlations, "--correlations")):
        check_out_file(path, option)
    ph = load_phase_params(params, {"train_loss_threshold": train_loss_threshold,
                                    "mc_threshold": mc_threshold,
                                    "cka_threshold": cka_threshold})
    if thresholds_from is not None:
        ph = updated(ph, "phase", thresholds_from=str(thresholds_from))
    source = ph.thresholds_from
    if source is not None and thresholds_dir is not None and not Path(
            source).resolve().is_relative_to(Path(thresholds_dir).resolve()):
        raise ConfigError(f"phase.thresholds_from: {source} is not in {thresholds_dir}/, the "
                          "folder classify-phase depends on in dvc.yaml, so a change to it "
                          f"would not rerun the stage; copy it there (landscape-taxonomy "
                          f"thresholds {source} --out {thresholds_dir}/NAME.json)")
    from ..report import stages as report
    result = report.classify(table, out, summary, train_loss_threshold=ph.train_loss_threshold,
                               mc_threshold=ph.mc_threshold, cka_threshold=ph.cka_threshold,
                               thresholds_from=None if source is None else Path(source),
                               load_col=load_col, temperature_col=temperature_col,
                               correlations_csv=correlations, cells_dir=cells,
                               warn=lambda line: typer.echo(line, err=True))
    counts = result["phase"].value_counts().to_dict()
    typer.echo(f"phases of {len(result)} cells -> {out}: {counts}")


@one_line_errors
def findings_command(table: Path = typer.Argument(..., help="metrics table (CSV)"),
                     out: Path = typer.Option(Path("reports/findings.json"), help=(
                         "each finding's verdict and headline number (DVC metrics)")),
                     detail: Path = typer.Option(None, help=(
                         "also write every statistic, interval, rule and reason here")),
                     phases: Path = typer.Option(None, help=(
                         "classify's phases table; without it the table is classified first")),
                     summary: Path = typer.Option(None, help=(
                         "classify's summary.json, with --phases: the thresholds used and "
                         "the phases' standard errors")),
                     params: Path = typer.Option(None, "--params", help=(
                         "without --phases: params.yaml (or a phase: section) for the "
                         "thresholds; else every threshold is auto")),
                     train_loss_threshold: str = _threshold("train-loss"),
                     mc_threshold: str = _threshold("mc"),
                     cka_threshold: str = _threshold("cka"),
                     load_col: str = LOAD_COL, temperature_col: str = TEMPERATURE_COL):
    """Check the paper's findings F1-F10 on a study (ours or a published table): each with
    its statistic, a 95% interval and a verdict (holds / fails / not testable here)."""
    from ..report import stages as report
    from ..report.tables import check_out_file
    check_out_file(out, "--out")
    check_out_file(detail, "--detail")
    kw = {}
    if phases is None:
        ph = load_phase_params(params, {"train_loss_threshold": train_loss_threshold,
                                        "mc_threshold": mc_threshold,
                                        "cka_threshold": cka_threshold})
        kw = {"train_loss_threshold": ph.train_loss_threshold, "mc_threshold": ph.mc_threshold,
              "cka_threshold": ph.cka_threshold,
              "thresholds_from": None if ph.thresholds_from is None else Path(
                  ph.thresholds_from)}
    found = report.findings(table, out, detail, phases_csv=phases, summary_json=summary,
                            load_col=load_col, temperature_col=temperature_col,
                            warn=lambda line: typer.echo(line, err=True), **kw)
    for key, f in found.items():
        value = f["statistics"].get(f["headline"], {})
        shown = value.get("value") if isinstance(value, dict) else None
        note = "; ".join(x for x in (f"{f['headline']} {shown:.4g}" if shown is not None
                                     else "", f.get("reason", "")) if x)
        sure = "" if f.get("confident", True) else " (within noise)"
        typer.echo(f"{key:>3} {f['verdict']}{sure}: {note}")


@one_line_errors
def thresholds_command(source: Path = typer.Argument(..., help=(
                           "summary.json of a classify run (or a thresholds file)")),
                       out: Path = typer.Option(..., "--out", help="thresholds file to write")):
    """Write a run's three phase thresholds, and where they came from, to a JSON file for
    phase.thresholds_from (or classify --thresholds-from): the same boundaries on other
    grids, so the same models keep their phase."""
    from ..cells.io import write_json
    from ..report import thresholds
    doc = thresholds.export(source)
    for line in doc["warnings"]:
        typer.echo(f"warning: {source} was classified with a warning: "
                   f"{line.removeprefix('warning: ')}", err=True)
    write_json(out, doc)
    values = ", ".join(f"{k} {doc[k]:.4g}" for k in thresholds.KEYS)
    typer.echo(f"thresholds of {source} -> {out}: {values}")


@one_line_errors
def plot_command(metrics: Path = typer.Option(None, help="metrics table (CSV)"),
                 phases: Path = typer.Option(None, help="phases table (CSV)"),
                 curves: Path = typer.Option(None, help="curve table (CSV)"),
                 density: Path = typer.Option(None, help="eigenvalue density table (CSV)"),
                 findings: Path = typer.Option(None, help=(
                     "findings' detail JSON (landscape-taxonomy findings --detail)")),
                 summary: Path = typer.Option(None, help=(
                     "classify's summary.json: the mc threshold, marked on mc's heatmap")),
                 out: Path = typer.Option(Path("reports/figures"), help="figures folder"),
                 load_col: str = LOAD_COL, temperature_col: str = TEMPERATURE_COL):
    """Phase map, one heatmap per metric, the connectivity curves and the cells' eigenvalue
    densities (PNG and SVG)."""
    from ..report import stages as report
    from ..report.tables import check_out_dir
    if metrics is None and phases is None:
        raise ConfigError("plot: give --metrics and/or --phases")
    check_out_dir(out)
    written = report.plot(metrics, phases, curves, out, load_col=load_col,
                          temperature_col=temperature_col, density_csv=density,
                          findings_json=findings, summary_json=summary)
    typer.echo(f"{len(written)} figure files -> {out}")


@one_line_errors
def plots_page_command(out: Path = typer.Option(Path(".dvc/plots/page.html"), help=(
                           "the HTML template to write (.dvc/config plots.html_template)"))):
    """Write the page template `dvc plots show` uses: Vega, Vega-Lite and vega-embed
    inline, so the data plots draw with no network."""
    from ..report import plots_page
    path = plots_page.write(out)
    typer.echo(f"plots page template -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
