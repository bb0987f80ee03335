"""`landscape-taxonomy classify` and `plot` on tables from elsewhere: no params file, a
partial one, flags, foreign axis names, and one clear line for every broken table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_taxonomy.report.figures import filename

PAPER = Path(__file__).parent / "data" / "paper_resnet18_width_batch.csv"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def foreign(tmp_path) -> Path:
    """The paper's grid as another study might publish it: its own axis column names."""
    df = pd.read_csv(PAPER).drop(columns=["load_param", "temperature_param", "paper_phase"])
    df = df.rename(columns={"load": "width", "temperature": "batch_size"})
    path = tmp_path / "published.csv"
    df.to_csv(path, index=False)
    return path


def test_classify_without_params_uses_auto_and_reports_it(foreign, tmp_path):
    out, summary = tmp_path / "phases.csv", tmp_path / "summary.json"
    res = cli("classify", foreign, "--load-col", "width", "--temperature-col", "batch_size",
              "--out", out, "--summary", summary)
    assert res.returncode == 0, res.stderr
    ph = pd.read_csv(out)
    assert len(ph) == 182 and set(ph["load_param"]) == {"width"}
    s = json.loads(summary.read_text())
    assert all(s["thresholds"][k]["method"] != "given" for k in ("train_loss", "mc", "cka"))
    assert s["best_mean_test_acc_phase"] == "IV-B"
    assert s["spearman_with_test_acc"]["cka"] > 0.5
    assert s["spearman_with_test_acc"]["hessian_top"] < -0.5


def test_flags_and_a_partial_params_file(foreign, tmp_path):
    params = tmp_path / "phase.yaml"
    params.write_text("phase: {train_loss_threshold: 0.02, mc_threshold: 1.0}\n")
    out, summary = tmp_path / "phases.csv", tmp_path / "summary.json"
    res = cli("classify", foreign, "--params", params, "--cka-threshold", "0.7",
              "--load-col", "width", "--temperature-col", "batch_size", "--out", out,
              "--summary", summary)
    assert res.returncode == 0, res.stderr
    th = json.loads(summary.read_text())["thresholds"]
    assert [th[k]["value"] for k in ("train_loss", "mc", "cka")] == [0.02, 1.0, 0.7]
    ref = pd.read_csv(PAPER)["paper_phase"]
    assert (pd.read_csv(out)["phase"] == ref).all()


def test_plot_a_foreign_table(foreign, tmp_path):
    phases = tmp_path / "phases.csv"
    assert cli("classify", foreign, "--load-col", "width", "--temperature-col",
               "batch_size", "--out", phases).returncode == 0
    figs = tmp_path / "figs"
    res = cli("plot", "--metrics", foreign, "--phases", phases, "--load-col", "width",
              "--temperature-col", "batch_size", "--out", figs)
    assert res.returncode == 0, res.stderr
    for name in ("overview", "phase_map", "correlations", "heatmap_cka"):
        assert (figs / f"{filename(name)}.png").stat().st_size > 1000


ROWS = "load,temperature,train_loss,mc,cka\n1,16,0.5,-3,0.4\n2,16,0.01,0,0.8\n"


@pytest.mark.parametrize("text,args,message", [
    ("", (), "empty file"),
    ("load,temperature,train_loss,mc,cka\n", (), "no data rows (header only)"),
    ("load,temperature,train_loss,cka\n1,16,0.5,0.4\n", (), "missing column(s) mc"),
    ("width,batch_size,train_loss,mc,cka\n1,16,0.5,-3,0.4\n", (),
     "missing column(s) load, temperature (name the axis columns"),
    ("width,batch_size,train_loss,mc,cka\n1,16,0.5,-3,0.4\n", ("--load-col", "depth"),
     "--load-col 'depth' is not a column"),
    (ROWS.replace("0.01,0", "0.01,abc"), (), "column 'mc' row 2: 'abc' is not a number"),
    (ROWS.replace("2,16", ",16"), (), "row 2: load is empty or NaN"),
    (ROWS.replace("2,16", "1,16"), (), "rows 1 and 2 are the same cell (load=1, temp"),
    (ROWS + "3,16,0.1,0,0.5,extra\n", (), "row 3 has 6 fields, the header 5"),
    ("load,load,train_loss,mc,cka\n1,2,0.5,0,0.4\n", (), "column 'load' appears more"),
    (ROWS, ("--mc-threshold", "big"), "--mc-threshold: must be a number or auto"),
    (ROWS, ("--cka-threshold", "2"), "phase.cka_threshold: must be 'auto' or a number in"),
])
def test_a_broken_table_gets_one_line_and_no_output(tmp_path, text, args, message):
    src = tmp_path / "t.csv"
    src.write_text(text)
    out = tmp_path / "phases.csv"
    res = cli("classify", src, "--out", out, "--train-loss-threshold", "0.1", *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert message in lines[0]
    assert "Traceback" not in res.stderr and not out.exists()


def test_figure_files_keep_vl_converts_pixels_in_fewer_bytes(foreign, tmp_path):
    import io

    import numpy as np
    import vl_convert as vlc
    from altair.utils.mimebundle import vl_version_for_vl_convert
    from PIL import Image

    from landscape_taxonomy.report import charts, figures
    from landscape_taxonomy.report.tables import read_table

    df = read_table(foreign, load_col="width", temperature_col="batch_size")
    chart = charts.metric_heatmap(df, "cka")
    svg, png = figures.save(chart, tmp_path, "cka")
    # what vl-convert makes of the chart as altair gives it (ARIA labels on)
    raw_svg = vlc.vegalite_to_svg(chart.to_dict(), vl_version=vl_version_for_vl_convert())
    raw = vlc.svg_to_png(raw_svg, scale=2, ppi=72)
    pixels = [np.asarray(Image.open(io.BytesIO(b))) for b in (raw, png.read_bytes())]
    assert np.array_equal(*pixels)
    assert png.stat().st_size < len(raw) / 2
    # every cell's screen-reader label gone (the title keeps its own)
    assert raw_svg.count("aria-label") > 10 * svg.read_text().count("aria-label")
    assert svg.stat().st_size < 0.8 * len(raw_svg.encode())


def test_plot_draws_cell_densities_and_skips_a_header_only_table(tmp_path):
    # the pipeline's density.csv, one cell per grid point, and method pyhessian's (no rows)
    import numpy as np

    from landscape_taxonomy.report import stages as report

    metrics = tmp_path / "metrics.csv"
    metrics.write_text(ROWS)
    grid = np.linspace(-1, 5, 50)
    pd.DataFrame([{"cell": f"c{load}", "load": load, "temperature": 16, "eigenvalue": g,
                   "density": float(np.exp(-g * g))} for load in (1, 2) for g in grid]
                 ).to_csv(tmp_path / "density.csv", index=False)
    written = report.plot(metrics, None, None, tmp_path / "figs",
                          density_csv=tmp_path / "density.csv")
    assert tmp_path / "figs" / "15_density.png" in written
    (tmp_path / "empty.csv").write_text("cell,load,temperature,eigenvalue,density\n")
    written = report.plot(metrics, None, None, tmp_path / "figs2",
                          density_csv=tmp_path / "empty.csv")
    assert written and not (tmp_path / "figs2" / "15_density.png").exists()


def test_a_figure_is_the_same_bytes_whatever_was_drawn_before(foreign, tmp_path):
    # vl-convert's gradient ids count every conversion in the process; a colour legend drawn
    # twice must still give one file
    from landscape_taxonomy.report import charts, figures
    from landscape_taxonomy.report.tables import read_table

    df = read_table(foreign, load_col="width", temperature_col="batch_size")
    first, _ = figures.save(charts.metric_heatmap(df, "cka"), tmp_path / "a", "cka")
    figures.save(charts.metric_heatmap(df, "l2"), tmp_path / "b", "l2")
    again, _ = figures.save(charts.metric_heatmap(df, "cka"), tmp_path / "c", "cka")
    assert "gradient_" in first.read_text()
    assert first.read_bytes() == again.read_bytes()


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    folder, file = tmp_path / "adir", tmp_path / "afile"
    folder.mkdir()
    file.write_text("")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    for args, line in (
            (["classify", PAPER, "--out", folder], f"error: --out: {folder} is a folder"),
            (["findings", PAPER, "--out", folder], f"error: --out: {folder} is a folder"),
            (["classify", PAPER, "--out", file / "p.csv"], f"error: --out: {file} is a file"),
            (["plot", "--metrics", PAPER, "--out", file], f"error: --out: {file} is a file"),
            (["classify", binary, "--out", tmp_path / "p.csv"],
             f"error: table {binary}: not a text (UTF-8) CSV file")):
        res = cli(*args)
        assert res.returncode == 2 and res.stderr.startswith(line), (args, res.stderr)
        assert len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "p.csv").exists() and list(folder.iterdir()) == []


def test_a_table_larger_than_altairs_guard_is_drawn(tmp_path):
    # 80 x 80 cells: over altair's 5,000-row limit for embedded data
    n = 80
    phases = pd.DataFrame({"load": np.repeat(np.arange(1, n + 1), n),
                           "temperature": np.tile(np.arange(1, n + 1), n),
                           "phase": np.resize(["I", "II", "III", "IV-A", "IV-B"], n * n)})
    path = tmp_path / "phases.csv"
    phases.to_csv(path, index=False)
    res = cli("plot", "--phases", path, "--out", tmp_path / "figs")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "figs" / f"{filename('phase_map')}.png").stat().st_size > 1000


def test_a_bug_of_ours_is_an_internal_error_with_its_traceback_kept(tmp_path, monkeypatch):
    # a numpy-style ValueError from deep in our code is not the user's bad input
    from typer.testing import CliRunner

    from landscape_taxonomy.cli.app import app
    from landscape_taxonomy.report import phases

    def summarize(*a, **k):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(phases, "summarize", summarize)
    res = CliRunner().invoke(app, ["classify", str(PAPER), "--out",
                                           str(tmp_path / "p.csv")])
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith("internal error: ValueError: operands could not be broadcast "
                           "together with shapes (3,) (4,); traceback in ")
    log = Path(line.rsplit("traceback in ", 1)[1])
    assert "Traceback (most recent call last)" in log.read_text() and "summarize" in \
        log.read_text()
    assert not (tmp_path / "p.csv").exists()
    # while a table the user got wrong stays their error: one line, exit 2
    bad = tmp_path / "bad.csv"
    bad.write_text("load,temperature,train_loss\n1,16,0.5\n")
    res = CliRunner().invoke(app, ["classify", str(bad)])
    assert res.exit_code == 2 and res.stderr == f"error: table {bad}: missing column(s) mc, cka\n"


def test_a_grid_whose_models_diverged_says_so(tmp_path):
    rows = ["load,temperature,train_loss,mc,cka,n_models,n_diverged"]
    rows += [f"{w},{b},nan,nan,nan,3,3" for w in (1, 2) for b in (16, 32)]
    rows += ["4,16,0.01,0,0.9,3,0"]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    res = cli("classify", path, "--out", tmp_path / "p.csv")
    assert res.returncode == 2 and res.stderr.startswith(
        "error: every model diverged in 4 of 5 cells (loss non-finite or no better than "
        "chance), so phase.train_loss_threshold: auto has 1 cells to read")
    # with numbers there is nothing to read off the grid: the cells are labelled diverged
    res = cli("classify", path, "--out", tmp_path / "p.csv", "--train-loss-threshold", "0.1",
              "--mc-threshold", "1", "--cka-threshold", "0.8")
    assert res.returncode == 0, res.stderr
    assert (pd.read_csv(tmp_path / "p.csv")["phase"] == "diverged").sum() == 4
