"""The study's figures as files: every chart of charts.py rendered to PNG and SVG with stable
names and bytes (so an unchanged figure is an unchanged file).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import altair as alt
import pandas as pd

from .charts import (
    HEATMAPS,
    accuracy_lines,
    cell_density_chart,
    correlation_chart,
    curve_chart,
    findings_table,
    metric_heatmap,
    metric_scatter,
    overview,
    phase_map,
)


def _compressed(png: bytes) -> bytes:
    """The same pixels, zlib at Pillow's default level: vl-convert's PNGs are 4x larger
    (4.9 MB for the default study's figures, 1.0 MB re-encoded, 0.7 s)."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).save(out, "PNG")
    return out.getvalue()


def save(chart: alt.Chart, out_dir: Path, name: str) -> list[Path]:
    """name.svg and name.png (2x)."""
    return _write(_static(chart.to_dict()), out_dir, name)


def _static(spec: dict) -> dict:
    """The spec for a file, not a page: without Vega's ARIA labels, which describe every mark
    for a screen reader in an interactive view and were 40% of the SVGs' bytes (the
    curves' 434 kB, 234 kB without). The PNGs come out pixel for pixel the same."""
    return {**spec, "config": {**spec.get("config", {}), "aria": False}}


def _write(spec: dict, out_dir: Path, name: str) -> list[Path]:
    """One compiled spec -> name.svg and name.png. The spec is compiled once, and the PNG is
    the SVG rasterized: chart.save would do both for each format, half the plot stage's
    time. vl-convert and Pillow's encoder release the GIL, so figures convert in threads."""
    import vl_convert as vlc
    from altair.utils.mimebundle import vl_version_for_vl_convert

    out_dir.mkdir(parents=True, exist_ok=True)
    svg = _stable_ids(vlc.vegalite_to_svg(spec, vl_version=vl_version_for_vl_convert()))
    paths = []
    for ext, data in (("svg", svg.encode()), ("png", _compressed(vlc.svg_to_png(svg, scale=2,
                                                                               ppi=72)))):
        p, tmp = out_dir / f"{name}.{ext}", out_dir / f".{name}.tmp.{ext}"
        tmp.write_bytes(data)
        tmp.replace(p)
        paths.append(p)
    return paths


def _stable_ids(svg: str) -> str:
    """vl-convert numbers the gradients (colour legends) with one counter for every
    conversion in the process, so a figure's ids depended on the figures converted before
    it, in threads on timing, and a fresh run could write other bytes. Numbered within
    each file from 0, the same figure is the same file."""
    ids: dict[str, int] = {}
    return re.sub(r"gradient_(\d+)",
                  lambda m: f"gradient_{ids.setdefault(m.group(1), len(ids))}", svg)


def charts(metrics: pd.DataFrame | None, phases: pd.DataFrame | None,
           curves: pd.DataFrame | None, density: pd.DataFrame | None = None,
           found: dict | None = None, mc_threshold: float | None = None):
    """(name, chart) of every figure the inputs allow."""
    if phases is not None and len(phases):
        yield "phase_map", phase_map(phases)
    if found:
        yield "findings", findings_table(found)
    if metrics is not None and phases is not None and len(phases) and "test_acc" in metrics:
        yield "accuracy_lines", accuracy_lines(metrics, phases)
        yield "scatter", metric_scatter(metrics, phases)
    if metrics is not None:
        for col in HEATMAPS:
            if col in metrics.columns:
                yield f"heatmap_{col}", metric_heatmap(metrics, col, mc_threshold)
    if metrics is not None and phases is not None and len(phases) and "test_acc" in metrics:
        yield "overview", overview(metrics, phases)
    if metrics is not None:
        from .phases import spearman_with_test_acc
        corr = spearman_with_test_acc(metrics)
        if corr:
            yield "correlations", correlation_chart(corr)
    if curves is not None and len(curves):
        c = curves.copy()
        c["curve_id"] = c["cell"].astype(str) + c["pair"].astype(str) + c["path"].astype(str)
        yield "curves", curve_chart(c)
    if density is not None and len(density):
        yield "density", cell_density_chart(density, phases)


# The figures in reading order, numbered so (`dvc plots show` sorts images by file name): the
# paper's Fig. 2 at a glance, the findings, the metric heatmaps, then curves and densities.
ORDER = ("overview", "findings", "accuracy_lines", "scatter", "phase_map", "heatmap_test_acc",
         "heatmap_train_loss", "heatmap_hessian_top", "heatmap_hessian_trace", "heatmap_mc",
         "heatmap_cka", "heatmap_l2", "correlations", "curves", "density")


def filename(name: str) -> str:
    """A figure's file name without extension: 01_overview, 05_phase_map, ..."""
    return f"{ORDER.index(name) + 1:02d}_{name}"


def render_all(metrics: pd.DataFrame | None, phases: pd.DataFrame | None,
               curves: pd.DataFrame | None, out_dir: Path,
               density: pd.DataFrame | None = None, found: dict | None = None,
               mc_threshold: float | None = None) -> list[Path]:
    """Every figure the inputs allow; returns the files written. The specs are built here
    (altair is not thread-safe), then compiled and rasterized two at a time."""
    from concurrent.futures import ThreadPoolExecutor

    # altair refuses data over 5,000 rows, a guard for notebooks that embed them; these
    # figures are files, and a grid of any size is drawn (time and file size grow with it)
    alt.data_transformers.disable_max_rows()

    specs = [(name, _static(chart.to_dict()))
             for name, chart in charts(metrics, phases, curves, density, found,
                                       mc_threshold)]
    with ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda item: _write(item[1], out_dir, filename(item[0])), specs)
        return [p for paths in done for p in paths]
