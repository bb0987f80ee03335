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

The stage scripts in stages/ run these same functions, so DVC and a shell do the same work.
classify and plot also take a metrics table from elsewhere (published results, say) that
has the contract's columns.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import typer

from . import kernels
from .config import ConfigError, load_params, load_phase_params, read_yaml, updated

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Loss-landscape taxonomy: train a grid, measure it, sort it into phases.")

PARAMS = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read")


def one_line_errors(fn):
    """Known user errors end the command with one line on stderr and exit status 2; failed
    cells with 2 (bad input) or 1 (our code failed); SIGINT/SIGTERM with 130/143."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        kernels.pin_numpy()  # before anything loads numpy, which reads it once (kernels.py)
        try:
            return fn(*args, **kwargs)
        except BaseException as e:  # executor.Interrupted is a BaseException
            executor = sys.modules.get(f"{__package__}.executor")
            if executor is not None and isinstance(e, executor.Interrupted):
                typer.echo(str(e), err=True)
                _exit(e.exit_code)
            pipeline = sys.modules.get(f"{__package__}.pipeline")
            if pipeline is not None and isinstance(e, pipeline.CellsFailed):
                typer.echo(str(e) if e.internal else f"error: {e}", err=True)
                _exit(e.exit_code)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if not isinstance(e, _user_errors()):  # a bug of ours: say so, keep the trace
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


def _user_errors() -> tuple:
    """The user-error classes (bad params, data or tables), of the modules loaded so far
    (one not loaded raised none; not importing them keeps a bad params file from loading
    torch just to report it). Anything else is a bug of ours."""
    found = [ConfigError]
    for module, name in (("data", "DataError"), ("tables", "TableError")):
        loaded = sys.modules.get(f"{__package__}.{module}")
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


def _exit(code: int):
    executor = sys.modules.get(f"{__package__}.executor")
    if executor is not None and executor.connect_abandoned():
        sys.stdout.flush()  # a Ray connection still retrying: do not wait for it
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@app.command("prepare")
@one_line_errors
def prepare_command(params: Path = PARAMS,
                    out: Path = typer.Option(Path("data/prepared"), help="prepared-data folder")):
    """Load the dataset, draw the label noise, write tensors and a manifest."""
    p = load_params(params)  # before the imports: a bad file is told at once
    from . import pipeline
    m = pipeline.prepare(p, out)
    typer.echo(f"prepared {m['dataset']}: {m['n_train']} train, {m['n_test']} test (label-noise "
               f"draws of seed {m['seed']}, for every level; each cell records its own)")


@app.command("train")
@one_line_errors
def train_command(params: Path = PARAMS,
                  data: Path = typer.Option(Path("data/prepared"), help="prepared-data folder"),
                  out: Path = typer.Option(Path("models"), help="models folder to write")):
    """Train every seed of every grid cell (reusing finished cells from the store)."""
    p = load_params(params)
    from . import executor, pipeline
    executor.stop_with_dvc()
    entries = pipeline.train(p, data, out)
    typer.echo(f"trained grid: {len(entries)} cells in {out}")


@app.command("metrics")
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
    from . import executor, pipeline
    executor.stop_with_dvc()
    table = pipeline.compute_metrics(p, data, models, out, curves, cells, density)
    typer.echo(f"metrics of {len(table)} cells -> {out}")


def _threshold(name: str):
    return typer.Option(None, f"--{name}-threshold",
                        help=f"a number, or auto; overrides phase.{name.replace('-', '_')}"
                             "_threshold of --params")


LOAD_COL = typer.Option(None, "--load-col", help="column holding the load axis (e.g. width)")
TEMPERATURE_COL = typer.Option(None, "--temperature-col",
                               help="column holding the temperature axis (e.g. batch_size)")


@app.command("classify")
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
    from .tables import check_out_file
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
    from . import report
    result = report.classify(table, out, summary, train_loss_threshold=ph.train_loss_threshold,
                               mc_threshold=ph.mc_threshold, cka_threshold=ph.cka_threshold,
                               thresholds_from=None if source is None else Path(source),
                               load_col=load_col, temperature_col=temperature_col,
                               correlations_csv=correlations, cells_dir=cells,
                               warn=lambda line: typer.echo(line, err=True))
    counts = result["phase"].value_counts().to_dict()
    typer.echo(f"phases of {len(result)} cells -> {out}: {counts}")


@app.command("findings")
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
    from . import report
    from .tables import check_out_file
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


@app.command("thresholds")
@one_line_errors
def thresholds_command(source: Path = typer.Argument(..., help=(
                           "summary.json of a classify run (or a thresholds file)")),
                       out: Path = typer.Option(..., "--out", help="thresholds file to write")):
    """Write a run's three phase thresholds, and where they came from, to a JSON file for
    phase.thresholds_from (or classify --thresholds-from): the same boundaries on other
    grids, so the same models keep their phase."""
    from . import thresholds
    from .io import write_json
    doc = thresholds.export(source)
    for line in doc["warnings"]:
        typer.echo(f"warning: {source} was classified with a warning: "
                   f"{line.removeprefix('warning: ')}", err=True)
    write_json(out, doc)
    values = ", ".join(f"{k} {doc[k]:.4g}" for k in thresholds.KEYS)
    typer.echo(f"thresholds of {source} -> {out}: {values}")


@app.command("plot")
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
    from . import report
    from .tables import check_out_dir
    if metrics is None and phases is None:
        raise ConfigError("plot: give --metrics and/or --phases")
    check_out_dir(out)
    written = report.plot(metrics, phases, curves, out, load_col=load_col,
                          temperature_col=temperature_col, density_csv=density,
                          findings_json=findings, summary_json=summary)
    typer.echo(f"{len(written)} figure files -> {out}")


@app.command("plots-page")
@one_line_errors
def plots_page_command(out: Path = typer.Option(Path(".dvc/plots/page.html"), help=(
                           "the HTML template to write (.dvc/config plots.html_template)"))):
    """Write the page template `dvc plots show` uses: Vega, Vega-Lite and vega-embed
    inline, so the data plots draw with no network."""
    from . import plots_page
    path = plots_page.write(out)
    typer.echo(f"plots page template -> {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command("store")
@one_line_errors
def store_command(action: str = typer.Argument(..., help="gc: drop unreferenced cells"),
                  params: Path = PARAMS,
                  dry_run: bool = typer.Option(False, "--dry-run",
                                               help="list what would go, remove nothing")):
    """The cell store. `store gc` removes the cells that neither the workspace outputs nor
    any commit of a branch, tag or DVC experiment refers to."""
    if action != "gc":
        raise ConfigError(f"store: unknown action {action!r}; the one there is: gc")
    from .store import CellStore, repository_root
    from .store_gc import gc

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


def declared_params(dvc_yaml: Path) -> list[tuple[str, str]]:
    """(stage, dotted key) for each key of params.yaml that dvc.yaml's stages declare under
    `params:`, in the file's order: the plain entries and those under a `params.yaml:`
    mapping (a mapping naming another file declares that file's keys, not these)."""
    doc = read_yaml(dvc_yaml) or {}
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        return []
    out = []
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            continue
        body = stage.get("do") if isinstance(stage.get("do"), dict) else stage  # foreach
        for entry in body.get("params") or []:
            if isinstance(entry, str):
                out.append((name, entry))
            elif isinstance(entry, dict):
                out += [(name, k) for k in entry.get("params.yaml") or [] if isinstance(k, str)]
    return out


def has_key(doc, dotted: str) -> bool:
    """Whether a params file's mapping holds the dotted key (a section counts if present),
    as DVC looks a declared key up: a stage whose key is missing does not run."""
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _dvc_yaml_for(params: Path) -> Path | None:
    """The dvc.yaml beside the params file, else the one in the working directory."""
    for folder in (Path(params).resolve().parent, Path.cwd()):
        if (folder / "dvc.yaml").is_file():
            return folder / "dvc.yaml"
    return None


STAMP = "params.yaml passed the schema and the pre-flight checks (landscape-taxonomy " \
        "check-params)\n"


@app.command("check-params")
@one_line_errors
def check_params_command(params: Path = typer.Argument(Path("params.yaml")),
                         stamp: Path = typer.Option(None, help=(
                             "write this file once every check passed: the pipeline's first "
                             "stage, which the others depend on, so that a bad params.yaml "
                             "stops dvc repro before any of them runs"))):
    """Validate a params file and print the grid it describes. With a dvc.yaml beside it
    (or in the working directory), also check that the file has every key its stages
    declare: DVC stops at a stage whose declared key is missing, though the schema would
    take the default. Then what can be known to fail before training (preflight.py)."""
    from . import grid, preflight
    p = load_params(params)
    found = preflight.errors(p)
    if found:
        raise ConfigError(found[0])
    checked = ""
    dvc_yaml = _dvc_yaml_for(params)
    if dvc_yaml is not None:
        doc = read_yaml(params) or {}
        declared = declared_params(dvc_yaml)
        missing = {}
        for stage, key in declared:
            if not has_key(doc, key):
                missing.setdefault(key, stage)
        if missing:
            (key, stage), *others = missing.items()
            more = f"; also missing: {', '.join(k for k, _ in others)}" if others else ""
            raise ConfigError(f"{key}: missing from {params}; stage {stage} of {dvc_yaml} "
                              f"declares it, so dvc repro stops there{more}")
        checked = f"; has every key the stages of {dvc_yaml} declare"
    for line in preflight.warnings(p):  # once every error is ruled out
        typer.echo(line, err=True)
    n = len(grid.cells(p))
    if stamp is not None:  # the same bytes every time: the stages after it do not rerun
        from .io import atomic_write_text
        atomic_write_text(stamp, STAMP)
    typer.echo(f"{params}: ok; {n} cells x {p.grid.seeds} seeds "
               f"({p.grid.load.param} x {p.grid.temperature.param}){checked}")



@app.command("rugged")
@one_line_errors
def rugged_command(params: Path = PARAMS,
                   out_dir: Path = typer.Option(Path("reports/rugged"), "--out-dir",
                                                help="folder for the tables and figures")):
    """Run the 1-D rugged-convexity study (rugged.py, our model) and sort its cells with the
    study's phase rule; reads only the params file's rugged: section."""
    cfg = load_params(params).rugged
    from . import rugged  # after the pin one_line_errors sets for numpy
    summary = rugged.run(cfg, out_dir)
    counts = {p: n for p, n in summary["phases"].items() if n}
    typer.echo(f"rugged convexity: {summary['cells']} cells -> {out_dir}: {counts}; best test "
               f"cell in {summary.get('best_test_acc_phase')}, best phase on average "
               f"{summary.get('best_mean_test_acc_phase')} ({summary['seconds']:.1f} s)")


if __name__ == "__main__":
    app()
