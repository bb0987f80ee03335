"""Rugged convexity in one dimension: OUR model, not the paper's equations.

Yang et al. (2021, arXiv 2107.11228v1) mention "a simple one-dimensional model with load-like
and temperature-like parameters" and an "effective loss landscape" that depends on them, read
as rugged convexity: one convex basin at the coarse scale (globally well connected), rough at
the fine scale (locally sharp), with load and temperature deciding which scale the trained
models see. Those equations are not published. This module is our own model in that spirit,
measured with the study's metrics and sorted by the study's own rule and `auto` thresholds
(phases.py, thresholds.py, through report.classify), so its phases are read as the network's
are.

The landscape, one coordinate x in [-X, X] (walls reflect), one row per load λ:

    L(x) = c0 - D(λ) exp(-x²/2w²) + ρ(λ) r(x),      r(x) = Σ_k a_k sin²((kωx + φ_k)/2)
    D(λ) = c0 (λ/λ_f)^p / (1 + (λ/λ_f)^p)           depth of the coarse basin
    ρ(λ) = ρ0 / (1 + (λ/λ_r)^q)                     amplitude of the fine, rough part

Why this family: c0 is the untrained (chance) level, the plateau far from the basin, so a
model that leaves the basin is visibly untrained. The load digs the basin (its floor
c0 - D = c0 / (1 + (λ/λ_f)^p) falls towards 0: at small load the landscape is flat and rough,
with no single basin) and smooths the fine part (ρ falls as λ^-q: the data constrain the
coarse solution ever more, the sample-to-sample roughness ever less). r has K harmonics of
one fine period 2π/ω (weights a_k ∝ 1/k, phases φ_k drawn from the seed): every fine well
sits on the envelope, and neighbouring wells are ρ apart, so the barriers are known exactly.
Gaussian basin, periodic r: L, L' and L'' and the smoothed landscape are all closed forms.

The dynamics (temperature T): Langevin steps x <- x - η L'(x) + sqrt(2ηT) ξ, from
x0 ~ N(0, σ0²), `steps` steps at η = f / κ(λ), κ(λ) = D/w² + ρ Σ a_k (kω)²/2 the largest
curvature L can have (each load runs at the same fraction of its stable step, as a tuned
SGD would). Cold runs stop in the fine well next to where they start; warmer runs hop the
fine barriers (escape ∝ exp(-ρ/T)) and gather at the bottom of the coarse basin; hot runs
leave the basin for the plateau, whose entropy wins (phase II: untrained, and the line
between two plateau points dips through the basin, mc > 0).

The effective landscape at T: the loss a run rattling in a fine well feels, L averaged over
its thermal displacement, L_T(x) = E[L(x + s ξ)], s² = T / κ(λ). In closed form the basin
widens to W² = w² + s² and each harmonic fades by exp(-(kωs)²/2) (with K = 1, exp(-T/ρ) where
the fine part dominates κ): rugged where T << ρ, the one convex basin where T >> ρ.

Metrics per (load, temperature) cell over `runs` seeds of the dynamics (pairs: runs 2i and
2i+1), with the network table's column names (report.CONTRACT), so the classifier, summary
and plots read it unchanged:

    train_loss     L at the end point (mean, std over runs)
    hessian_top    L'' at the end point (mean); hessian_trace the same number (1-D)
    mc             along the straight line between a pair: (L(x1)+L(x2))/2 - L(x(t*)), t* where
                   |(L(x1)+L(x2))/2 - L(x(t))| is largest, as the network's mc (negative: a
                   barrier); mean and std over pairs, n_curve_pairs pairs
    cka            similarity stand-in: the share of pairs whose end points lie in one basin of
                   the effective landscape L_T (each quenched there by gradient descent;
                   "one basin": within half a fine period), i.e. the same model once its noise
                   is averaged out; std over pairs of that 0/1
    l2             |x1 - x2| (mean over pairs)
    test_loss      loss under the test landscape: the same envelope, other fine structure (new
                   phases φ'_k from the seed): the generalization gap is the fine part alone
    test_acc       exp(-test_loss) of the cell: a decreasing map into (0, 1], so the summary's
                   "best phase by test accuracy" ranks by test loss. It is not an accuracy.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .config.rugged import RuggedConfig

MODEL = ("rugged convexity in one dimension: our model (src/landscape_taxonomy/rugged.py); the "
         "paper's one-dimensional model is not published")
LOAD_NAME = "λ"
TEMPERATURE_NAME = "T"


# -- the landscape -----------------------------------------------------------------------

@dataclass(frozen=True)
class Landscape:
    """L(x) = c0 - D exp(-x²/2w²) + ρ Σ_k a_k sin²((kωx + φ_k)/2), one row per load.

    Positions are arrays whose first axis is the load (n_load, ...): each row is evaluated
    with its own D and ρ."""

    chance: float        # c0, the plateau
    depth: np.ndarray    # D, (n_load,)
    width: float         # w
    rough: np.ndarray    # ρ, (n_load,)
    omega: float         # 2π / fine period
    weights: np.ndarray  # a_k, (K,), summing to 1
    phases: np.ndarray   # φ_k, (K,)

    @property
    def k_omega(self) -> np.ndarray:
        return self.omega * np.arange(1, len(self.weights) + 1)

    def _rows(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        return v.reshape(v.shape + (1,) * (x.ndim - 1))

    def curvature(self) -> np.ndarray:
        """κ (n_load,): the largest |L''| can be (at a fine well on the basin's floor)."""
        return self.depth / self.width**2 + self.rough * float(
            np.sum(self.weights * self.k_omega**2 / 2))

    def row(self, i: int) -> Landscape:
        return replace(self, depth=self.depth[i:i + 1], rough=self.rough[i:i + 1])

    def with_phases(self, phases: np.ndarray) -> Landscape:
        return replace(self, phases=np.asarray(phases, float))

    def loss(self, x: np.ndarray) -> np.ndarray:
        return self.effective(x, 0.0)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.effective_grad(x, 0.0)

    def hess(self, x: np.ndarray) -> np.ndarray:
        d, r = self._rows(self.depth, x), self._rows(self.rough, x)
        w2 = self.width**2
        fine = sum(a * kw**2 / 2 * np.cos(kw * x + f)
                   for a, kw, f in zip(self.weights, self.k_omega, self.phases))
        return d / w2 * (1 - x * x / w2) * np.exp(-x * x / (2 * w2)) + r * fine

    def effective(self, x: np.ndarray, s2) -> np.ndarray:
        """L_T(x) = E[L(x + s ξ)], ξ ~ N(0, 1), for the smoothing variance s² (broadcast
        against x; 0 gives L itself)."""
        d, r = self._rows(self.depth, x), self._rows(self.rough, x)
        big_w2 = self.width**2 + s2
        coarse = d * np.sqrt(self.width**2 / big_w2) * np.exp(-x * x / (2 * big_w2))
        fine = sum(a * (1 - np.exp(-kw**2 * s2 / 2) * np.cos(kw * x + f)) / 2
                   for a, kw, f in zip(self.weights, self.k_omega, self.phases))
        return self.chance - coarse + r * fine

    def effective_grad(self, x: np.ndarray, s2) -> np.ndarray:
        d, r = self._rows(self.depth, x), self._rows(self.rough, x)
        big_w2 = self.width**2 + s2
        coarse = d * np.sqrt(self.width**2 / big_w2) * x / big_w2 * np.exp(-x * x / (2 * big_w2))
        fine = sum(a * kw / 2 * np.exp(-kw**2 * s2 / 2) * np.sin(kw * x + f)
                   for a, kw, f in zip(self.weights, self.k_omega, self.phases))
        return coarse + r * fine

    def smoothing(self, temperatures: np.ndarray) -> np.ndarray:
        """s² = T / κ(λ), (n_load, n_temp): a run's thermal spread in a fine well."""
        return np.asarray(temperatures, float)[None, :] / self.curvature()[:, None]


def build_landscape(cfg: RuggedConfig, phases: np.ndarray) -> Landscape:
    loads = np.asarray(cfg.loads, float)
    fit = (loads / cfg.fit_load) ** cfg.fit_exponent
    weights = 1.0 / np.arange(1, cfg.harmonics + 1)
    return Landscape(chance=cfg.chance_loss, depth=cfg.chance_loss * fit / (1 + fit),
                     width=cfg.basin_width,
                     rough=cfg.rough_amplitude / (1 + (loads / cfg.rough_load)
                                                  ** cfg.rough_exponent),
                     omega=2 * np.pi / cfg.rough_period, weights=weights / weights.sum(),
                     phases=np.asarray(phases, float))


# -- dynamics and the metrics on any landscape ---------------------------------------------

def reflect(x: np.ndarray, half_width: float) -> np.ndarray:
    """Fold positions back into [-X, X] (one fold: a step never crosses the whole box)."""
    x = np.where(x > half_width, 2 * half_width - x, x)
    return np.where(x < -half_width, -2 * half_width - x, x)


def langevin(grad, x0: np.ndarray, step: np.ndarray, temperature: np.ndarray, steps: int,
             rng: np.random.Generator, half_width: float) -> np.ndarray:
    """`steps` Langevin steps x <- x - η L'(x) + sqrt(2ηT) ξ; step and temperature broadcast
    against x0 (here η (n_load, 1, 1), T (1, n_temp, 1), x0 (n_load, n_temp, runs))."""
    x = np.array(x0, float)
    kick = np.sqrt(2 * step * temperature)
    for _ in range(steps):
        x = reflect(x - step * grad(x) + kick * rng.standard_normal(x.shape), half_width)
    return x


def descend(grad, x: np.ndarray, step, steps: int) -> np.ndarray:
    """Gradient descent without noise: the minimum of the basin each point lies in."""
    x = np.array(x, float)
    for _ in range(steps):
        x = x - step * grad(x)
    return x


def straight_mc(loss, x1: np.ndarray, x2: np.ndarray, points: int) -> np.ndarray:
    """mc of each pair along the straight line, signed as the network's mc (metrics/
    curves.py): (L1 + L2)/2 - L(t*), t* the first t where |(L1 + L2)/2 - L(t)| is largest;
    negative for a barrier. The line's t=0 end is the pair's lower-loss point, and both ends'
    deviations are set to exactly ±(L_high - L_low)/2: where no interior point deviates more
    than the ends themselves (a monotone profile, no barrier), the tie reads as mc > 0.
    x1, x2: (...,); returns (...,)."""
    t = np.linspace(0.0, 1.0, points)
    profile = loss(x1[..., None] + (x2 - x1)[..., None] * t)  # (..., points)
    flip = profile[..., -1] < profile[..., 0]
    profile = np.where(flip[..., None], profile[..., ::-1], profile)
    low, high = profile[..., 0], profile[..., -1]
    dev = (low + high)[..., None] / 2 - profile
    dev[..., 0], dev[..., -1] = (high - low) / 2, (low - high) / 2
    i = np.argmax(np.abs(dev), axis=-1)
    return np.take_along_axis(dev, i[..., None], axis=-1)[..., 0]


def same_basin(grad, x1: np.ndarray, x2: np.ndarray, step, steps: int,
               tol: float) -> np.ndarray:
    """Whether each pair descends (noise off) to one minimum: the quenched points within
    `tol` of each other. x1, x2: (...,); step broadcasts against them."""
    return np.abs(descend(grad, x1, step, steps) - descend(grad, x2, step, steps)) < tol


# -- the study ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Study:
    cfg: RuggedConfig
    landscape: Landscape       # training
    test: Landscape            # the same envelope, other fine phases
    loads: np.ndarray          # (n_load,)
    temperatures: np.ndarray   # (n_temp,)
    step: np.ndarray           # η per load, (n_load,)
    ends: np.ndarray           # end points, (n_load, n_temp, runs)


def simulate(cfg: RuggedConfig) -> Study:
    """Every cell's runs, all at once: the end points of (n_load, n_temp, runs) walkers."""
    rng = np.random.default_rng(cfg.seed)
    train_phases = rng.uniform(0, 2 * np.pi, cfg.harmonics)
    test_phases = rng.uniform(0, 2 * np.pi, cfg.harmonics)
    land = build_landscape(cfg, train_phases)
    loads, temps = np.asarray(cfg.loads, float), np.asarray(cfg.temperatures, float)
    step = cfg.step_fraction / land.curvature()
    x0 = rng.normal(0.0, cfg.init_scale, (len(loads), len(temps), cfg.runs))
    ends = langevin(land.grad, x0, step[:, None, None], temps[None, :, None], cfg.steps, rng,
                    cfg.half_width)
    return Study(cfg, land, land.with_phases(test_phases), loads, temps, step, ends)


def metrics_table(study: Study) -> pd.DataFrame:
    """One row per cell, with the network table's column names (report.CONTRACT)."""
    cfg, land, x = study.cfg, study.landscape, study.ends
    train, test, hess = land.loss(x), study.test.loss(x), land.hess(x)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (n_load, n_temp, pairs)
    mc = straight_mc(land.loss, x1, x2, cfg.path_points)
    s2 = land.smoothing(study.temperatures)[..., None]
    same = same_basin(lambda q: land.effective_grad(q, s2), x1, x2, study.step[:, None, None],
                      cfg.quench_steps, cfg.rough_period / 2).astype(float)
    l2 = np.abs(x1 - x2)
    rows = []
    for i, load in enumerate(study.loads):
        for j, temp in enumerate(study.temperatures):
            test_loss = float(test[i, j].mean())
            rows.append({
                "load": float(load), "temperature": float(temp), "load_param": LOAD_NAME,
                "temperature_param": TEMPERATURE_NAME, "n_models": cfg.runs,
                "train_loss": float(train[i, j].mean()),
                "train_loss_std": float(train[i, j].std(ddof=1)),
                "test_loss": test_loss, "test_loss_std": float(test[i, j].std(ddof=1)),
                "test_acc": math.exp(-test_loss),
                "hessian_top": float(hess[i, j].mean()),
                "hessian_top_std": float(hess[i, j].std(ddof=1)),
                "hessian_trace": float(hess[i, j].mean()),
                "mc": float(mc[i, j].mean()), "mc_std": float(mc[i, j].std(ddof=1)),
                "n_curve_pairs": int(mc.shape[-1]),
                "cka": float(same[i, j].mean()), "cka_std": float(same[i, j].std(ddof=1)),
                "l2": float(l2[i, j].mean()), "l2_std": float(l2[i, j].std(ddof=1)),
            })
    return pd.DataFrame(rows)


def layout(phases_df: pd.DataFrame) -> dict:
    """Where each phase lies: its cells' mean log10 load and log10 temperature."""
    out = {}
    for p, cells in phases_df.groupby("phase", sort=True):
        out[str(p)] = {"cells": int(len(cells)),
                       "mean_log10_load": float(np.log10(cells["load"]).mean()),
                       "mean_log10_temperature": float(np.log10(cells["temperature"]).mean())}
    return out


def representative(phases_df: pd.DataFrame, phase: str) -> tuple[float, float]:
    """The phase's cell nearest the middle of its region, in (log load, log temperature)."""
    cells = phases_df[phases_df["phase"] == phase]
    pts = np.log10(cells[["load", "temperature"]].to_numpy(float))
    k = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    return float(cells["load"].iloc[k]), float(cells["temperature"].iloc[k])


# -- figures -------------------------------------------------------------------------------

def cell_chart(study: Study, load: float, temperature: float, phase: str):
    """The paper's Fig. 1 picture for one cell: L, its effective version L_T at the cell's
    temperature, and where the runs end (on L)."""
    import altair as alt

    from .report.charts import PHASE_COLORS

    i = int(np.flatnonzero(study.loads == load)[0])
    j = int(np.flatnonzero(study.temperatures == temperature)[0])
    cfg, land = study.cfg, study.landscape.row(i)
    ends = study.ends[i, j]
    # Wide enough for the runs and the start; fine enough to draw every fine well.
    reach = min(cfg.half_width, max(2 * cfg.init_scale, 1.25 * float(np.abs(ends).max())))
    # 4800 points stay under altair's 5000-row limit; they draw every fine well of a panel
    # near the basin (a hot panel spanning the plateau shows the fine part as a band).
    n = int(np.clip(16 * 2 * reach / cfg.rough_period, 801, 4800))
    xs = np.linspace(-reach, reach, n)
    s2 = float(land.smoothing(np.array([temperature]))[0, 0])
    # Field names without dots: Vega reads a dot as a nested field.
    train_name, effective_name = "L (training)", "L_T (effective, at the cell T)"
    curves = pd.DataFrame({"x": xs, train_name: land.loss(xs[None])[0],
                           effective_name: land.effective(xs[None], s2)[0]})
    dots = pd.DataFrame({"x": ends, "loss": land.loss(ends[None])[0]})
    colour = alt.Color("curve:N", title=None, legend=alt.Legend(orient="bottom"),
                       scale=alt.Scale(domain=[train_name, effective_name],
                                       range=["#999999", PHASE_COLORS.get(phase, "#000000")]))
    # L wide and grey under L_T: where the two agree (cold cells) L_T hides all but its rim.
    lines = alt.Chart(curves).transform_fold([train_name, effective_name],
                                             as_=["curve", "loss"]).mark_line().encode(
        x=alt.X("x:Q", title="x"), y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        color=colour, order=alt.Order("curve:N"),
        strokeWidth=alt.StrokeWidth("curve:N", legend=None, scale=alt.Scale(
            domain=[train_name, effective_name], range=[3.0, 1.2])))
    points = alt.Chart(dots).mark_circle(size=22, color="black", opacity=0.6).encode(
        x="x:Q", y="loss:Q")
    title = alt.TitleParams(f"phase {phase}: λ = {load:g}, T = {temperature:g}",
                            subtitle=f"{cfg.runs} runs end at the black dots")
    return alt.layer(lines, points, title=title).properties(width=300, height=220)


def figures(study: Study, metrics: pd.DataFrame, phases_df: pd.DataFrame,
            out_dir: Path) -> tuple[list[Path], dict]:
    """figures/: phase_map and overview (report/charts.py's), one landscape_<phase> per phase and
    landscapes (all of them side by side). Returns the files and the cells drawn."""
    import altair as alt

    from .report import charts, figures
    from .report.phases import PHASES

    drawn, panels, written = {}, [], []
    for p in [p for p in PHASES if p in set(phases_df["phase"])]:
        load, temp = representative(phases_df, p)
        drawn[p] = {"load": load, "temperature": temp}
        chart = cell_chart(study, load, temp, p)
        panels.append(chart)
        written += figures.save(chart, out_dir, f"landscape_{p}")
    if panels:
        written += figures.save(alt.hconcat(*panels).resolve_scale(color="independent"),
                              out_dir, "landscapes")
    written += figures.save(charts.phase_map(phases_df), out_dir, "phase_map")
    written += figures.save(charts.overview(metrics, phases_df), out_dir, "overview")
    return written, drawn


def run(cfg: RuggedConfig, out_dir: Path, *, draw: bool = True) -> dict:
    """The whole study: out_dir/metrics.csv, phases.csv, summary.json and figures/."""
    from .cells.io import write_csv, write_json
    from .report.stages import classify

    out_dir = Path(out_dir)
    started = time.perf_counter()
    study = simulate(cfg)
    metrics = metrics_table(study)
    write_csv(out_dir / "metrics.csv", metrics)
    phases_df = classify(out_dir / "metrics.csv", out_dir / "phases.csv",
                                out_dir / "summary.json")
    summary = json.loads((out_dir / "summary.json").read_text())
    summary["model"] = MODEL
    summary["layout"] = layout(phases_df)
    if draw:
        _, summary["figure_cells"] = figures(study, metrics, phases_df, out_dir / "figures")
    write_json(out_dir / "summary.json", summary)
    summary["seconds"] = time.perf_counter() - started  # not in the file: outputs stay bytes
    return summary
