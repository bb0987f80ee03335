"""The one-dimensional rugged-convexity model (rugged.py): its metrics on landscapes whose
answers are known, its closed forms, and the default study's phases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from landscape_taxonomy import rugged
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def model(*, depth=1.0, rough=0.0, period=0.05, phases=(0.0,)) -> rugged.Landscape:
    """One load's landscape: c0 - D exp(-x²/2) + ρ sin²((ωx + φ)/2)."""
    return rugged.Landscape(chance=1.0, depth=np.array([depth]), width=1.0,
                            rough=np.array([rough]), omega=2 * np.pi / period,
                            weights=np.ones(len(phases)) / len(phases),
                            phases=np.array(phases, float))


# -- a single convex bowl: no barrier, one basin ---------------------------------------------

def test_no_pair_in_a_convex_bowl_has_a_barrier():
    """A convex loss never rises above its larger end along a line, so the largest
    deviation from the ends' mean is theirs: mc >= 0 for every pair."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(-3, 3, 500), rng.uniform(-3, 3, 500)
    assert (rugged.straight_mc(lambda x: x * x, x1, x2, 101) >= 0).all()
    gaussian = model(rough=0.0)  # convex where |x| < w = 1
    x1, x2 = rng.uniform(-0.9, 0.9, (1, 500)), rng.uniform(-0.9, 0.9, (1, 500))
    assert (rugged.straight_mc(gaussian.loss, x1, x2, 101) >= 0).all()


def test_cold_runs_in_a_convex_bowl_end_together_with_mc_zero():
    bowl = model(rough=0.0)
    rng = np.random.default_rng(1)
    x0 = rng.normal(0, 0.3, (1, 1, 32))
    ends = rugged.langevin(bowl.grad, x0, 0.5, 0.0, 400, rng, 20.0)
    x1, x2 = ends[..., 0::2], ends[..., 1::2]
    assert np.abs(rugged.straight_mc(bowl.loss, x1, x2, 101)).max() < 1e-12
    assert rugged.same_basin(bowl.grad, x1, x2, 0.5, 100, 1e-6).all()


# -- two wells with a known barrier: mc is minus its height ----------------------------------

@pytest.mark.parametrize("wells_apart", [1, 3])
def test_mc_is_minus_the_barrier_between_two_fine_wells(wells_apart):
    """ρ sin²(ωx/2) alone (no basin): wells at 0, p, 2p, ... of loss c0, tops ρ above them
    halfway between. Any two wells: ends' mean c0, highest point c0 + ρ: mc = -ρ."""
    rho, p = 0.3, 0.05
    board = model(depth=0.0, rough=rho, period=p)
    x1, x2 = np.array([[0.0]]), np.array([[wells_apart * p]])
    assert board.loss(x1)[0, 0] == 1.0 and abs(board.loss(x2)[0, 0] - 1.0) < 1e-15
    mc = rugged.straight_mc(board.loss, x1, x2, 513)[0, 0]
    assert abs(mc - (-rho)) < 1e-12
    assert not rugged.same_basin(board.grad, x1, x2, 0.5 / board.curvature()[0], 200, p / 2)
    near = np.array([[wells_apart * p + 0.2 * p]])  # in the same well as x2
    assert rugged.same_basin(board.grad, x2, near, 0.5 / board.curvature()[0], 200, p / 2)


def test_mc_is_minus_the_barrier_of_a_double_well():
    """h (x² - 1)²: minima at ±1 (loss 0), a barrier h at x = 0 (t = 1/2 of the line)."""
    h = 2.5
    loss = lambda x: h * (x * x - 1) ** 2  # noqa: E731
    grad = lambda x: 4 * h * x * (x * x - 1)  # noqa: E731
    mc = rugged.straight_mc(loss, np.array([-1.0, -1.0]), np.array([1.0, -0.8]), 101)
    assert mc[0] == -h
    assert 0 < mc[1]  # two points of one well: no barrier between them
    same = rugged.same_basin(grad, np.array([-1.2, -1.2]), np.array([0.9, -0.7]), 0.01, 2000,
                             1e-3)
    assert same.tolist() == [False, True]


def test_a_monotone_line_has_no_barrier_whatever_the_order():
    loss = lambda x: x ** 3  # noqa: E731
    a = rugged.straight_mc(loss, np.array([0.0]), np.array([1.0]), 11)
    b = rugged.straight_mc(loss, np.array([1.0]), np.array([0.0]), 11)
    assert a[0] == b[0] == 0.5


# -- closed forms --------------------------------------------------------------------------

def test_derivatives_and_the_effective_landscape_match_their_definitions():
    land = model(depth=0.8, rough=0.02, period=0.05, phases=(0.7, 2.0))
    x = np.linspace(-1.5, 1.5, 41)[None]
    eps = 1e-6
    fd = (land.loss(x + eps) - land.loss(x - eps)) / (2 * eps)
    assert np.allclose(land.grad(x), fd, rtol=1e-6, atol=1e-6)
    fd2 = (land.grad(x + eps) - land.grad(x - eps)) / (2 * eps)
    assert np.allclose(land.hess(x), fd2, rtol=1e-6, atol=1e-4)
    # L_T(x) = E[L(x + s ξ)]: Gauss-Hermite quadrature of the Gaussian average
    s2 = 3e-4
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    avg = sum(w * land.loss(x + np.sqrt(s2) * z) for z, w in zip(nodes, weights))
    assert np.allclose(land.effective(x, s2), avg / weights.sum(), rtol=0, atol=1e-12)
    fd = (land.effective(x + eps, s2) - land.effective(x - eps, s2)) / (2 * eps)
    assert np.allclose(land.effective_grad(x, s2), fd, rtol=1e-6, atol=1e-6)
    assert np.array_equal(land.effective(x, 0.0), land.loss(x))


def test_the_runs_are_a_function_of_the_seed():
    small = rugged.RuggedConfig(loads=(1.0, 8.0), temperatures=(1e-3, 0.1), runs=4, steps=50)
    a, b = rugged.simulate(small), rugged.simulate(small)
    assert np.array_equal(a.ends, b.ends)
    other = rugged.simulate(small.model_copy(update={"seed": 1}))
    assert not np.array_equal(a.ends, other.ends)


# -- the default study ---------------------------------------------------------------------

def test_the_default_study_shows_every_phase_in_the_papers_order(tmp_path):
    summary = rugged.run(rugged.RuggedConfig(), tmp_path, draw=False)
    assert all(summary["phases"][p] > 0 for p in ("I", "II", "III", "IV-A", "IV-B"))
    assert summary["best_test_acc_phase"] == "IV-B"
    assert summary["best_mean_test_acc_phase"] == "IV-B"
    at = summary["layout"]
    load = {p: at[p]["mean_log10_load"] for p in at}
    temp = {p: at[p]["mean_log10_temperature"] for p in at}
    assert load["I"] < min(load["III"], load["IV-A"], load["IV-B"])
    assert temp["II"] > max(t for p, t in temp.items() if p != "II")  # II: the hot end
    assert temp["IV-B"] > temp["IV-A"]  # IV-B between IV-A and II
    phases = pd.read_csv(tmp_path / "phases.csv")
    smallest, largest = phases[phases["load"] == phases["load"].min()], \
        phases[phases["load"] == phases["load"].max()]
    assert set(smallest["phase"]) <= {"I", "II"}
    assert "I" not in set(largest["phase"]) and "III" not in set(largest["phase"])
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert np.allclose(metrics["test_acc"], np.exp(-metrics["test_loss"]))
    assert (metrics["n_curve_pairs"] >= 2).all()


# -- params and the stage ------------------------------------------------------------------

def test_params_are_checked_with_one_line_errors():
    cfg = parse_params({"rugged": {"loads": [1, 2.5], "runs": 8}}).rugged
    assert cfg.loads == (1.0, 2.5) and cfg.temperatures == rugged.RuggedConfig().temperatures
    for raw, message in [({"runs": 7}, "rugged.runs: must be an even integer"),
                         ({"path_points": 100}, "rugged.path_points: must be an odd integer"),
                         ({"loads": [1, 1]}, "rugged.loads: must be distinct values"),
                         ({"temperatures": [0.1, -1]}, "rugged.temperatures: must be numbers"),
                         ({"step": 3}, "rugged.step: unknown key")]:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            parse_params({"rugged": raw})


def test_the_stage_writes_tables_and_figures(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 5, "rugged": {"runs": 16, "steps": 1500}}))
    out = tmp_path / "rugged"
    res = subprocess.run([sys.executable, str(ROOT / "stages" / "rugged_convexity.py"),
                          "--params", str(params), "--out-dir", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"].startswith("rugged convexity in one dimension: our model")
    drawn = [p for p in ("I", "II", "III", "IV-A", "IV-B") if summary["phases"][p]]
    for name in ["phase_map", "overview", "landscapes", *(f"landscape_{p}" for p in drawn)]:
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
    assert set(summary["figure_cells"]) == set(drawn)

    params.write_text("rugged:\n  runs: 5\n")
    res = subprocess.run([sys.executable, str(ROOT / "stages" / "rugged_convexity.py"),
                          "--params", str(params), "--out-dir", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: rugged.runs: must be an even integer >= 4 (runs are paired), got 5"]
