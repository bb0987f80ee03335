"""The taxonomy on hand-made rows, and the classify command on an outside table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from landscape_taxonomy.phases import classify, classify_row

TH = {"train_loss_threshold": 0.1, "mc_threshold": 1.0, "cka_threshold": 0.8}


@pytest.mark.parametrize("loss,mc,cka,phase", [
    (0.5, -10.0, 0.3, "I"),       # high loss, barrier
    (0.5, 3.0, 0.3, "II"),        # high loss, curve beats endpoints
    (0.5, -0.5, 0.3, "II"),       # high loss, mc within ε of 0
    (0.01, -10.0, 0.9, "III"),    # low loss, barrier
    (0.01, 0.2, 0.5, "IV-A"),     # low loss, connected, dissimilar
    (0.01, -0.9, 0.95, "IV-B"),   # low loss, connected, similar
    (0.01, 0.0, 0.8, "IV-B"),     # at the CKA threshold
    (math.nan, 0.0, 0.9, "undetermined"),
    (0.01, math.nan, 0.9, "undetermined"),
])
def test_each_phase_of_the_table(loss, mc, cka, phase):
    assert classify_row(loss, mc, cka, **TH) == phase


def table():
    return pd.DataFrame([
        {"load": 1, "temperature": 16, "train_loss": 0.5, "mc": -10, "cka": 0.3,
         "test_acc": 0.5, "train_loss_std": 0.1, "mc_std": 2.0},
        {"load": 8, "temperature": 16, "train_loss": 0.01, "mc": 0.0, "cka": 0.9,
         "test_acc": 0.9},
        {"load": 8, "temperature": 64, "train_loss": math.nan, "mc": math.nan,
         "cka": math.nan, "n_models": 2, "n_diverged": 2},
    ])


def test_classify_table_marks_diverged_and_margins():
    out = classify(table(), **TH)
    assert list(out["phase"]) == ["I", "IV-B", "diverged"]
    # nearest boundary: mc is (−1 − (−10)) / 2 = 4.5 std away, train loss 0.4/0.1 = 4
    assert out.loc[0, "phase_margin"] == pytest.approx(4.0)
    assert out.loc[0, "margin_metric"] == "train_loss" and not out.loc[0, "boundary"]


def test_a_cell_within_its_noise_is_flagged_boundary():
    row = {"load": 1, "temperature": 16, "train_loss": 0.12, "train_loss_std": 0.05,
           "mc": -5.0, "mc_std": 1.0, "cka": 0.5}
    out = classify(pd.DataFrame([row]), **TH)
    assert out.loc[0, "phase"] == "I" and out.loc[0, "boundary"]
    assert out.loc[0, "phase_margin"] == pytest.approx(0.4)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="mc"):
        classify(pd.DataFrame({"load": [1], "temperature": [1], "train_loss": [0.1],
                               "cka": [0.5]}), **TH)


def test_console_script_classifies_an_outside_table(tmp_path):
    src = tmp_path / "published.csv"
    table().to_csv(src, index=False)
    params = tmp_path / "p.yaml"
    params.write_text("grid: {load: {param: width, values: [1]}, "
                      "temperature: {param: batch_size, values: [16]}}\n"
                      "phase: {train_loss_threshold: 0.1, mc_threshold: 1.0, "
                      "cka_threshold: 0.95}\n")
    out, summary = tmp_path / "phases.csv", tmp_path / "summary.json"
    res = subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "classify", str(src),
                          "--params", str(params), "--out", str(out), "--summary", str(summary)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert list(pd.read_csv(out)["phase"]) == ["I", "IV-A", "diverged"]
    s = json.loads(summary.read_text())
    assert s["phases"]["I"] == 1 and s["best_test_acc_phase"] == "IV-A"
    figs = tmp_path / "figs"
    res = subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "plot", "--metrics",
                          str(src), "--phases", str(out), "--out", str(figs)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (figs / "phase_map.png").stat().st_size > 1000
    assert (figs / "heatmap_mc.svg").read_text().startswith("<svg")
