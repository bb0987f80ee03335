"""Phase boundaries read off the data, checked on made-up tables with known groups and on
the paper's released ResNet18 / CIFAR-10 grid (tests/data, rebuilt from the reference
repository's results by tests/data/build_paper_grid.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_taxonomy import thresholds
from landscape_taxonomy.phases import classify

PAPER = Path(__file__).parent / "data" / "paper_resnet18_width_batch.csv"
# The paper's figure, as DESIGN.md tabulates it from the released metrics: cells per
# phase and mean test accuracy, at train loss 0.02, mc 1.0 points, CKA 0.7 (180 cells:
# the two width-1 cells whose CKA is NaN in the release are left out).
PAPER_COUNTS = {"II": 27, "I": 60, "III": 27, "IV-A": 40, "IV-B": 26}
PAPER_ACC = {"II": 0.815, "I": 0.712, "III": 0.814, "IV-A": 0.852, "IV-B": 0.883}
EXPLICIT = {"train_loss_threshold": 0.02, "mc_threshold": 1.0, "cka_threshold": 0.7}


def paper() -> pd.DataFrame:
    return pd.read_csv(PAPER).dropna(subset=["cka"]).reset_index(drop=True)


def test_two_group_split_cuts_between_the_groups():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0, 0.1, 30), rng.normal(5, 0.1, 10)])
    cut, d = thresholds.two_group_split(v)
    assert v[v < 2.5].max() < cut < v[v > 2.5].min()
    assert (d["n_low"], d["n_high"]) == (30, 10)


def grid(losses, mcs, ckas, mc_std=None):
    df = pd.DataFrame({"load": range(len(losses)), "temperature": 1.0,
                       "train_loss": losses, "mc": mcs, "cka": ckas})
    if mc_std is not None:
        df["mc_std"] = mc_std
        df["n_curve_pairs"] = 2
    return df


def test_auto_train_loss_finds_the_tenfold_fall():
    losses = [1e-3, 2e-3, 1.5e-3, 3e-3, 0.3, 0.5, 0.8, 0.4]
    t = thresholds.auto_train_loss(grid(losses, [0] * 8, [0.5] * 8))
    assert 3e-3 < t.value < 0.3
    assert t.details["tenfold"] and t.details["fold_between_groups"] > 100


def test_auto_mc_is_a_band_of_the_measured_pair_noise():
    t = thresholds.auto_mc(grid([0.01] * 4, [-5, 0, 0.2, -0.1], [0.5] * 4,
                                mc_std=[0.5, 0.2, 0.4, 0.3]), 0.1)
    assert t.value == pytest.approx(2 * 0.35)
    assert "spread of mc over seed pairs" in t.method


def test_auto_mc_band_ignores_the_spread_of_models_that_cannot_fit():
    # four flat cells measured to +-0.5 points and four sharp ones whose pairs disagree by
    # 15 points: the band is the flat cells' (2 x 0.5), not the pooled median's (2 x 8)
    losses = [0.01] * 4 + [1.0] * 4
    t = thresholds.auto_mc(grid(losses, [-4, 0, 0.2, -0.1, -40, -30, -45, -20], [0.5] * 8,
                                mc_std=[0.4, 0.5, 0.5, 0.6, 15, 14, 16, 15]), 0.1)
    assert t.value == pytest.approx(1.0)
    assert "flat cells" in t.method and t.details["cells"] == 4
    # with fewer flat cells than a split needs, every cell's spread is used, and said
    t = thresholds.auto_mc(grid([0.01] * 2 + [1.0] * 4, [0, -1, -40, -30, -45, -20], [0.5] * 6,
                                mc_std=[0.5, 0.5, 15, 14, 16, 15]), 0.1)
    assert t.value == pytest.approx(2 * 14.5)
    assert "all cells" in t.method


def test_auto_mc_without_a_spread_splits_the_barrier_depths():
    mcs = [0.0, -0.1, 0.05, -0.2, -8.0, -12.0, -9.0, -0.02]
    t = thresholds.auto_mc(grid([0.01] * 8, mcs, [0.5] * 8), 0.1)
    assert 0.2 < t.value < 8.0
    assert "no mc spread" in t.method


def test_auto_cka_splits_flat_connected_cells_only():
    losses = [0.01] * 6 + [0.5, 0.01]
    mcs = [0] * 6 + [0, -20]
    ckas = [0.4, 0.42, 0.45, 0.85, 0.9, 0.88, 0.99, 0.99]  # the last two are II and III
    t = thresholds.auto_cka(grid(losses, mcs, ckas), 0.1, 1.0)
    assert 0.45 < t.value < 0.85
    assert t.details == {"cells_iv_b": 3, "cells_iv_a": 3}


def test_too_few_cells_for_auto_say_so():
    with pytest.raises(ValueError, match="train_loss_threshold: auto needs at least 4"):
        thresholds.auto_train_loss(grid([0.1, 0.2], [0, 0], [0.5, 0.5]))
    t = thresholds.auto_cka(grid([0.01] * 2, [0, 0], [0.5, 0.6]), 0.1, 1.0)
    assert np.isnan(t.value) and "too few" in t.method


def test_given_numbers_are_used_as_they_are():
    th = thresholds.resolve(paper(), train_loss=0.02, mc=1.0, cka=0.7)
    assert {k: v.value for k, v in th.items()} == {"train_loss": 0.02, "mc": 1.0, "cka": 0.7}
    assert all(v.method == "given" for v in th.values())


def test_explicit_thresholds_reproduce_the_papers_released_phase_diagram():
    out = classify(paper(), **EXPLICIT)
    assert out["phase"].value_counts().to_dict() == PAPER_COUNTS
    acc = out.groupby("phase")["test_acc"].mean()
    for p, a in PAPER_ACC.items():
        assert acc[p] == pytest.approx(a, abs=5e-4)
    assert acc.idxmax() == "IV-B"


def test_auto_thresholds_agree_with_the_papers_on_nine_cells_in_ten():
    table = paper()
    ref = classify(table, **EXPLICIT)["phase"]
    th = thresholds.resolve(table)
    out = classify(table, train_loss_threshold=th["train_loss"].value,
                   mc_threshold=th["mc"].value, cka_threshold=th["cka"].value)
    agree = (out["phase"] == ref).mean()
    assert agree >= 0.90, (agree, {k: v.value for k, v in th.items()})
    # and the paper's conclusion stands: IV-B is the most accurate phase
    assert out.groupby("phase")["test_acc"].mean().idxmax() == "IV-B"
