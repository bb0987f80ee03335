"""Altair charts of the grid: the phase map (the paper's Fig. 2a), one heatmap per metric,
and the mode-connectivity curves; figures.py saves them as PNG and SVG (vl-convert, no
browser).

Cells are drawn as equal rectangles on ordinal axes in numeric order, labelled with the
grid's values; lines (accuracy along an axis) use a log axis when the values are positive
and span more than a factor of 3.
"""

from __future__ import annotations

import textwrap

import altair as alt
import numpy as np
import pandas as pd

PHASE_COLORS = {"I": "#d62728", "II": "#ff7f0e", "III": "#9467bd", "IV-A": "#1f77b4",
                "IV-B": "#2ca02c", "diverged": "#444444", "undetermined": "#bbbbbb"}


# column -> (title, transform, colour scale). Quantities with a natural range get it as a
# fixed domain, so two experiments' figures compare by eye; mc diverges about 0 (red: a
# barrier), on a symlog scale so that a 1-point barrier shows beside a 50-point one.
HEATMAPS = {
    "train_loss": ("train loss (log10)", np.log10, {"scheme": "viridis"}),
    "test_acc": ("test accuracy", None, {"scheme": "viridis", "domain": [0, 1]}),
    "hessian_top": ("Hessian top eigenvalue λmax (log10)", np.log10, {"scheme": "magma"}),
    "hessian_trace": ("Hessian trace (log10)", np.log10, {"scheme": "magma"}),
    "mc": ("mode connectivity mc (% train error)", None,
           {"scheme": "redblue", "type": "symlog", "constant": 1, "domain": [-100, 100],
            "domainMid": 0}),
    "cka": ("CKA similarity", None, {"scheme": "viridis", "domain": [0, 1]}),
    "l2": ("L2 distance", None, {"scheme": "viridis", "zero": False}),
}


def _use_log(values) -> bool:
    v = sorted(set(float(x) for x in values))
    return v[0] > 0 and v[-1] / v[0] > 3


def _axis_names(df: pd.DataFrame) -> tuple[str, str]:
    tname = str(df["temperature_param"].iloc[0]) if "temperature_param" in df else "temperature"
    lname = str(df["load_param"].iloc[0]) if "load_param" in df else "load"
    return tname, lname


def _grid_chart(df: pd.DataFrame, color: alt.Color, title, tooltip,
                boundary: bool = False, marked: pd.Series | None = None) -> alt.Chart:
    """Cells of equal size on ordinal axes in numeric order (the grid's values spaced
    unevenly on a log axis would draw some columns wider than others), labelled with the
    parameter values; `boundary` outlines the cells flagged so in black."""
    tname, lname = _axis_names(df)
    df = df.copy()
    for c in ("load", "temperature"):
        df[c] = df[c].astype(float)
    x = alt.X("temperature:O", sort="ascending", title=f"{tname} (temperature)",
              axis=alt.Axis(labelAngle=-45, labelExpr=_number_label))
    y = alt.Y("load:O", sort="descending", title=f"{lname} (load)",
              axis=alt.Axis(labelExpr=_number_label))
    cells = alt.Chart(df).mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=x, y=y, color=color, tooltip=tooltip)
    if boundary and "boundary" in df.columns:
        flagged = df[df["boundary"].astype(str).str.lower() == "true"]
        # drawn over every cell, so a neighbour's white edge does not hide the outline
        cells += alt.Chart(flagged).mark_rect(fill=None, stroke="black", strokeWidth=2.5,
                                              strokeJoin="miter").encode(x=x, y=y)
    if marked is not None and marked.any():  # e.g. the cells past a threshold: a cross
        cells += alt.Chart(df[marked.to_numpy()]).mark_text(
            text="×", fontSize=18, color="black").encode(x=x, y=y)
    return cells.properties(title=title, width={"step": 48}, height={"step": 48})


# ordinal labels of numbers: 2 not 2.0, 0.00001 as 1e-5
_number_label = ("abs(datum.value) < 0.001 && datum.value != 0 ? format(datum.value, '.0e') "
                 ": format(datum.value, '~g')")


def phase_map(phases: pd.DataFrame) -> alt.Chart:
    present = [p for p in PHASE_COLORS if p in set(phases["phase"])]
    color = alt.Color("phase:N", scale=alt.Scale(domain=present,
                                                 range=[PHASE_COLORS[p] for p in present]),
                      sort=present)
    tips = [c for c in ("load", "temperature", "phase", "test_acc", "phase_margin", "boundary")
            if c in phases.columns]
    return _grid_chart(phases, color, "Phase diagram (outlined: within one spread of a "
                       "threshold)", tips, boundary=True)


def metric_heatmap(metrics: pd.DataFrame, column: str,
                   mc_threshold: float | None = None) -> alt.Chart:
    """One metric over the grid. For mc with the threshold the phases used, the cells past
    it (mc < -threshold: a barrier, poorly connected) carry a cross."""
    title, fn, scale = HEATMAPS[column]
    df = metrics.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = df[column].astype(float)
        df["value"] = fn(vals.where(vals > 0)) if fn is not None else vals
    df = df[np.isfinite(df["value"])]
    if df.empty:  # keep the file set stable for `dvc plots show`
        return alt.Chart(pd.DataFrame({"note": [f"no finite {column} in this grid"]}),
                         title=title).mark_text(size=14).encode(text="note:N").properties(
            width=360, height=300)
    std = f"{column}_std"
    tips = ["load", "temperature", alt.Tooltip(f"{column}:Q", format=".4g")]
    if std in df.columns:
        tips.append(alt.Tooltip(f"{std}:Q", format=".3g"))
    legend = title.split(" (")[0] if fn is None else title
    marked = None
    if column == "mc" and mc_threshold is not None and np.isfinite(mc_threshold):
        marked = df["value"] < -mc_threshold
        title = alt.TitleParams(title, subtitle=f"×: a barrier, mc < −{mc_threshold:.3g} "
                                                "(phase.mc_threshold)")
    return _grid_chart(df, alt.Color("value:Q", scale=alt.Scale(**scale), title=legend),
                       title, tips, marked=marked)


def curve_chart(curves: pd.DataFrame) -> alt.Chart:
    """Training error along each cell's curve (solid) and straight line (dashed), a panel
    per temperature in numeric order, in one row (no empty panels)."""
    temps = sorted(set(map(float, curves["temperature"])))
    # no point markers: with them Vega-Lite draws the path legend's symbols without a stroke
    return alt.Chart(curves).mark_line(strokeWidth=1.5).encode(
        x=alt.X("t:Q", title="t (position on the path)"),
        y=alt.Y("train_error:Q", title="train error (%)"),
        color=alt.Color("load:O", title="load", sort="ascending",
                        scale=alt.Scale(scheme="viridis")),
        strokeDash=alt.StrokeDash("path:N", title="path", scale=alt.Scale(
            domain=["curve", "line"], range=[[1, 0], [4, 3]]), legend=alt.Legend(
            symbolType="stroke", symbolStrokeColor="black", symbolStrokeWidth=2,
            labelExpr="datum.label == 'curve' ? 'trained curve' : 'straight line'")),
        detail="curve_id:N", tooltip=["cell", "pair", "path", "t", "train_error"],
    ).properties(width=130, height=140).facet(
        column=alt.Column("temperature:O", title="temperature", sort=temps,
                          header=alt.Header(labelExpr=_number_label)),
        title="Mode connectivity: training error along the path")


def overview(metrics: pd.DataFrame, phases: pd.DataFrame) -> alt.Chart:
    """The paper's Fig. 2 at a glance: the phase diagram beside the test-accuracy heatmap."""
    return alt.hconcat(phase_map(phases), metric_heatmap(metrics, "test_acc")).resolve_scale(
        color="independent")


def correlation_chart(corr: dict) -> alt.Chart:
    """Spearman's rho of each metric with test accuracy, one bar each (the sign says
    whether a larger value goes with better accuracy)."""
    df = pd.DataFrame({"metric": list(corr), "spearman": list(corr.values())})
    return alt.Chart(df, title="Rank correlation with test accuracy (Spearman)").mark_bar().encode(
        x=alt.X("spearman:Q", scale=alt.Scale(domain=[-1, 1]), title="Spearman rho"),
        y=alt.Y("metric:N", sort="-x", title=None),
        color=alt.condition("datum.spearman > 0", alt.value("#2ca02c"), alt.value("#d62728")),
        tooltip=["metric", alt.Tooltip("spearman:Q", format=".3f")],
    ).properties(width=360, height=24 * max(len(df), 1))


def density_chart(grid, density, title: str = "Hessian eigenvalue density (SLQ)") -> alt.Chart:
    """api.spectral_density's smoothed density, on a log scale as PyHessian draws it (the
    bulk near 0 and the few outliers differ by orders of magnitude)."""
    df = pd.DataFrame({"eigenvalue": grid, "density": np.maximum(density, 1e-12)})
    return alt.Chart(df, title=title).mark_line().encode(
        x=alt.X("eigenvalue:Q", title="eigenvalue"),
        y=alt.Y("density:Q", scale=alt.Scale(type="log"), title="density"),
    ).properties(width=360, height=220)


def cell_density_chart(density: pd.DataFrame, phases: pd.DataFrame | None) -> alt.Chart:
    """Every cell's Hessian eigenvalue density (reports/density.csv) laid out as the phase
    diagram: a row per load (largest on top), a column per temperature, each line in its
    cell's phase colour. Log density, cut 5 decades under each cell's peak: between the
    Ritz values the smoothed density falls to nothing."""
    df = density.copy()
    peak = df.groupby("cell")["density"].transform("max")
    df["density"] = np.maximum(df["density"], peak * 1e-5)
    color = alt.value("#333333")
    if phases is not None and len(phases):
        df = df.merge(phases[["load", "temperature", "phase"]], on=["load", "temperature"],
                      how="left").fillna({"phase": "undetermined"})
        present = [p for p in PHASE_COLORS if p in set(df["phase"])]
        color = alt.Color("phase:N", sort=present, scale=alt.Scale(
            domain=present, range=[PHASE_COLORS[p] for p in present]))
    tname, lname = _axis_names(phases if phases is not None else density)
    # Axis titles once, in the figure's title: repeated in 35 panels they would crowd them.
    title = alt.TitleParams("Hessian eigenvalue density of each cell (SLQ)", subtitle=(
        "x: eigenvalue (each panel its own range), y: density (log)"), anchor="middle")
    return alt.Chart(df).mark_line(strokeWidth=1).encode(
        x=alt.X("eigenvalue:Q", title=None, axis=alt.Axis(tickCount=3, format="~g")),
        y=alt.Y("density:Q", scale=alt.Scale(type="log"), title=None,
                axis=alt.Axis(tickCount=3, format="~e")),
        color=color,
    ).properties(width=120, height=60).facet(
        row=alt.Row("load:O", sort="descending", title=f"{lname} (load)"),
        column=alt.Column("temperature:O", title=f"{tname} (temperature)"),
        title=title,
    ).resolve_scale(x="independent", y="independent")


def _with_phase(metrics: pd.DataFrame, phases: pd.DataFrame) -> tuple[pd.DataFrame, alt.Color]:
    df = metrics.merge(phases[["load", "temperature", "phase"]], on=["load", "temperature"],
                       how="left").fillna({"phase": "undetermined"})
    return df, _phase_color(df)


def _phase_color(df: pd.DataFrame, legend: bool = True) -> alt.Color:
    present = [p for p in PHASE_COLORS if p in set(df["phase"])]
    return alt.Color("phase:N", sort=present, title="phase",
                     legend=alt.Legend() if legend else None,
                     scale=alt.Scale(domain=present, range=[PHASE_COLORS[p] for p in present]))


def accuracy_lines(metrics: pd.DataFrame, phases: pd.DataFrame) -> alt.Chart:
    """Test accuracy along each axis, one line per value of the other (the paper's view of
    double descent), each point in its cell's phase colour, with +-2 SE bars where the
    table has the seeds' spread."""
    df, phase_color = _with_phase(metrics, phases)
    tname, lname = _axis_names(df)
    if "test_acc_std" in df and "n_models" in df:
        se = df["test_acc_std"] / np.sqrt(df["n_models"].clip(lower=1))
        df["lo"], df["hi"] = df["test_acc"] - 2 * se, df["test_acc"] + 2 * se
    panels = []
    for x, xname, other, oname in (("load", lname, "temperature", tname),
                                   ("temperature", tname, "load", lname)):
        log = _use_log(df[x])
        xs = alt.Scale(type="log" if log else "linear", nice=False, zero=False)
        xa = alt.X(f"{x}:Q", scale=xs, title=f"{xname} ({x})",
                   axis=alt.Axis(values=sorted(set(map(float, df[x]))), format="~g"))
        order = sorted(set(map(float, df[other])))
        base = alt.Chart(df).encode(x=xa)
        line = base.mark_line(strokeWidth=1.2).encode(
            y=alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(zero=False)),
            color=alt.Color(f"{other}:O", sort=order, title=f"{oname} ({other})",
                            scale=alt.Scale(scheme="greys", domain=order)),
            detail=f"{other}:O")
        layers = [line]
        if "lo" in df:
            layers.append(base.mark_rule(opacity=0.6).encode(
                y="lo:Q", y2="hi:Q", color=_phase_color(df, legend=False)))
        layers.append(base.mark_point(filled=True, size=45, opacity=1).encode(
            y="test_acc:Q", color=phase_color,
            tooltip=["load", "temperature", "phase", alt.Tooltip("test_acc:Q", format=".4f")]))
        panels.append(alt.layer(*layers, title=alt.TitleParams(
            f"Test accuracy along {xname} ({x})", subtitle="bars: +-2 SE over seeds"))
                      .resolve_scale(color="independent").properties(width=320, height=260))
    return alt.hconcat(*panels).resolve_scale(color="independent")


def metric_scatter(metrics: pd.DataFrame, phases: pd.DataFrame) -> alt.Chart:
    """Local against global: the Hessian's λmax against mc, and CKA against test accuracy,
    each cell a point in its phase colour."""
    df, color = _with_phase(metrics, phases)
    panels = []
    for x, y, xtitle, ytitle, xlog in (
            ("hessian_top", "mc", "Hessian top eigenvalue (log)", "mc (% train error)", True),
            ("cka", "test_acc", "CKA similarity", "test accuracy", False)):
        if x not in df or y not in df:
            continue
        sub = df[np.isfinite(df[x].astype(float)) & np.isfinite(df[y].astype(float))]
        if xlog:
            sub = sub[sub[x] > 0]
        panels.append(alt.Chart(sub, title=f"{ytitle} against {xtitle}").mark_point(
            filled=True, size=50).encode(
            x=alt.X(f"{x}:Q", title=xtitle, scale=alt.Scale(type="log" if xlog else "linear",
                                                            zero=False, nice=not xlog)),
            y=alt.Y(f"{y}:Q", title=ytitle, scale=alt.Scale(zero=False)), color=color,
            tooltip=["load", "temperature", "phase", alt.Tooltip(f"{x}:Q", format=".4g"),
                     alt.Tooltip(f"{y}:Q", format=".4g")]).properties(width=300, height=260))
    return alt.hconcat(*panels)


VERDICT_COLORS = {"holds": "#2ca02c", "fails": "#d62728", "not testable here": "#888888"}


def findings_table(found: dict) -> alt.Chart:
    """reports/findings_detail.json as a table: each finding's verdict, its headline number
    with the 95% interval, and the claim (or why it cannot be tested here)."""
    rows = []
    for key, f in sorted(found.items(), key=lambda kv: int(kv[0].lstrip("F") or 0)):
        st = f.get("statistics", {}).get(f.get("headline"), {})
        value = st.get("value") if isinstance(st, dict) else None
        ci = st.get("ci95") if isinstance(st, dict) else None
        number = "" if value is None else f"{f['headline']} = {value:.3g}"
        if ci and ci[0] is not None:
            number += f" [{ci[0]:.3g}, {ci[1]:.3g}]"
        verdict = f["verdict"] + ("" if f.get("confident", True) else " (within noise)")
        text = f.get("reason") if f["verdict"] == "not testable here" else f["claim"]
        rows.append({"finding": key, "verdict": verdict, "number": number,
                     "text": "\n".join(textwrap.wrap(text or "", 105, max_lines=2,
                                                      placeholder=" …")),
                     "color": VERDICT_COLORS[f["verdict"]]})
    df = pd.DataFrame(rows)
    y = alt.Y("finding:N", sort=[r["finding"] for r in rows], axis=None)
    layers = []
    for col, x, weight in (("finding", 0, "bold"), ("verdict", 45, "normal"),
                           ("number", 200, "normal"), ("text", 480, "normal")):
        enc = {"y": y, "x": alt.value(x), "text": f"{col}:N"}
        if col == "verdict":
            enc["color"] = alt.Color("color:N", scale=None)
        layers.append(alt.Chart(df).mark_text(align="left", fontWeight=weight, fontSize=11,
                                              lineBreak="\n").encode(**enc))
    return alt.layer(*layers, title=alt.TitleParams(
        "The paper's findings on this study", subtitle=(
            "verdict; headline statistic [95% interval]; the claim, or what the grid lacks "
            "(reports/findings_detail.json)"), anchor="start")).properties(
        width=1150, height=34 * len(df)).configure_view(strokeWidth=0)
