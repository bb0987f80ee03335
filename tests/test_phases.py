"""The taxonomy on hand-made rows, and the classify command on an outside table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from landscape_taxonomy.report.phases import accuracy_se, classify, classify_row, lead, summarize

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
    assert (figs / "05_phase_map.png").stat().st_size > 1000
    assert (figs / "10_heatmap_mc.svg").read_text().startswith("<svg")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", *map(str, args)],
                          capture_output=True, text=True)


def grid_table(losses) -> pd.DataFrame:
    n = len(losses)
    return pd.DataFrame({"load": range(n), "temperature": 16, "train_loss": losses,
                         "mc": [0.0, 0.1, -0.2, 0.05] + [-20, -1, -30, 0][:n - 4],
                         "cka": [0.9, 0.92, 0.5, 0.55] + [0.3] * (n - 4),
                         "mc_std": [0.5] * 4 + [10] * (n - 4), "n_curve_pairs": 2})


def test_console_script_warns_one_line_per_degenerate_split(tmp_path):
    src = tmp_path / "near.csv"
    grid_table([0.1, 0.11, 0.1, 0.105, 0.15, 0.16, 0.155, 0.15]).to_csv(src, index=False)
    out, summary = tmp_path / "phases.csv", tmp_path / "summary.json"
    res = cli("classify", src, "--out", out, "--summary", summary)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "warning: phase.train_loss_threshold auto: the two groups are only 1.5x apart")
    assert json.loads(summary.read_text())["warnings"] == lines
    assert set(pd.read_csv(out)["flag"]) == {"train_loss_split"}


def test_thresholds_command_and_thresholds_from(tmp_path):
    base_src, near_src = tmp_path / "base.csv", tmp_path / "near.csv"
    grid_table([0.01, 0.011, 0.0105, 0.0102, 0.3, 0.5, 0.8, 0.4]).to_csv(base_src, index=False)
    grid_table([0.1, 0.11, 0.1, 0.105, 0.15, 0.16, 0.155, 0.15]).to_csv(near_src, index=False)
    base_summary = tmp_path / "base.json"
    assert cli("classify", base_src, "--out", tmp_path / "base_phases.csv",
               "--summary", base_summary).returncode == 0
    folder = tmp_path / "thresholds"
    th = folder / "baseline.json"
    res = cli("thresholds", base_summary, "--out", th)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    doc = json.loads(th.read_text())
    base = json.loads(base_summary.read_text())["thresholds"]
    assert {k: doc[k] for k in ("train_loss", "mc", "cka")} == {
        k: base[k]["value"] for k in ("train_loss", "mc", "cka")}
    assert doc["from"] == str(base_summary) and doc["methods"]["mc"] == base["mc"]["method"]
    # the near grid with the baseline's boundaries (from params or the flag): all of it is
    # sharp there (0.1-0.16 is above the baseline's cut), with no warning and no flag
    params = tmp_path / "p.yaml"
    params.write_text(f"phase: {{thresholds_from: {th}}}\n")
    for how in (("--params", params), ("--thresholds-from", th)):
        out, summary = tmp_path / "phases.csv", tmp_path / "summary.json"
        res = cli("classify", near_src, *how, "--out", out, "--summary", summary,
                  "--thresholds-dir", folder)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        s = json.loads(summary.read_text())
        assert s["warnings"] == [] and s["thresholds"]["mc"]["method"] == f"from {th}"
        phases = pd.read_csv(out, keep_default_na=False)
        assert (phases["flag"] == "").all() and set(phases["phase"]) <= {"I", "II"}
    # a file outside the folder the stage depends on, a missing one: one line, no output
    for args, message in (((base_summary, "--thresholds-dir", folder),
                           f"is not in {folder}/, the folder classify-phase depends on"),
                          ((tmp_path / "gone.json",),
                           f"phase.thresholds_from: {tmp_path / 'gone.json'}: file does not")):
        out = tmp_path / "refused.csv"
        res = cli("classify", near_src, "--out", out, "--thresholds-from", *args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr
        assert not out.exists()


def test_a_phases_accuracy_se_adds_the_seeds_and_the_test_sets_noise():
    # two cells of 3 models each on 1000 test images: seeds sqrt(0.02²/3 + 0.01²/3) / 2,
    # test set p(1 - p) / 1000 once (the same images score every cell)
    cells = pd.DataFrame({"load": [1, 2], "temperature": [1, 1], "test_acc": [0.8, 0.9]})
    metrics = cells.assign(test_acc_std=[0.02, 0.01], n_models=3, n_diverged=0, n_test=1000)
    seeds = (0.02 ** 2 / 3 + 0.01 ** 2 / 3) / 4
    assert accuracy_se(cells, metrics) == pytest.approx(math.sqrt(seeds + 0.85 * 0.15 / 1000))
    # a diverged model is not one of the seeds averaged
    one_down = metrics.assign(n_diverged=[1, 0])
    assert accuracy_se(cells, one_down) == pytest.approx(
        math.sqrt((0.02 ** 2 / 2 + 0.01 ** 2 / 3) / 4 + 0.85 * 0.15 / 1000))
    assert accuracy_se(cells, metrics.drop(columns="test_acc_std")) is None


def test_summary_reports_iv_bs_lead_over_iv_a_in_standard_errors():
    unpaired = lead({"IV-B": {"mean": 0.9, "se": 0.003}, "IV-A": {"mean": 0.88, "se": 0.004}},
                    "IV-B", "IV-A")
    assert unpaired.pop("test_set") == "unpaired (conservative)"
    assert unpaired == pytest.approx({"lead": 0.02, "se": 0.005, "lead_in_se": 4.0})
    assert lead({"IV-B": {"mean": 0.9}}, "IV-B", "IV-A") is None
    ph = pd.DataFrame({"load": [1, 2, 3, 4], "temperature": 1.0,
                       "phase": ["IV-A", "IV-A", "IV-B", "IV-B"],
                       "test_acc": [0.80, 0.82, 0.90, 0.92]})
    metrics = ph.drop(columns="phase").assign(test_acc_std=0.01, n_models=4, n_diverged=0,
                                              n_test=10_000)
    s = summarize(ph, metrics)
    se_a = math.sqrt(2 * 0.01 ** 2 / 4 / 4 + 0.81 * 0.19 / 10_000)
    se_b = math.sqrt(2 * 0.01 ** 2 / 4 / 4 + 0.91 * 0.09 / 10_000)
    assert s["test_acc_by_phase"]["IV-A"]["se"] == pytest.approx(se_a)
    assert s["iv_b_lead_over_iv_a"]["lead"] == pytest.approx(0.10)
    assert s["iv_b_lead_over_iv_a"]["lead_in_se"] == pytest.approx(0.10 / math.hypot(se_a, se_b))


def test_the_lead_is_paired_over_the_same_test_samples():
    # Two phases of one cell each, 4 models, 1000 test samples: B's models are right wherever
    # A's are, and on 20 samples more. Unpaired, the test set's binomial noise (~0.01 each)
    # swamps a lead of 0.02; paired, only the 20 samples where they differ vary.
    n = 1000
    a = np.zeros(n)
    a[:900] = 1.0
    b = a.copy()
    b[900:920] = 1.0
    ph = pd.DataFrame({"load": [1.0, 2.0], "temperature": 1.0, "phase": ["IV-A", "IV-B"],
                       "test_acc": [0.90, 0.92]})
    metrics = ph.drop(columns="phase").assign(test_acc_std=0.004, n_models=4, n_diverged=0,
                                              n_test=n)
    unpaired = summarize(ph, metrics)["iv_b_lead_over_iv_a"]
    s = summarize(ph, metrics, {(1.0, 1.0): a, (2.0, 1.0): b})
    paired = s["iv_b_lead_over_iv_a"]
    seeds = 2 * 0.004 ** 2 / 4
    assert paired["se"] == pytest.approx(math.sqrt(seeds + 0.02 * 0.98 / n))
    assert unpaired["se"] == pytest.approx(math.sqrt(seeds + (0.9 * 0.1 + 0.92 * 0.08) / n))
    assert paired["lead_in_se"] > 3 > 2 > unpaired["lead_in_se"]
    assert paired["test_set"].startswith("paired") and unpaired["test_set"].startswith("unpaired")
    # a phase's own SE: its per-sample share's variance, here the binomial's exactly
    row = s["test_acc_by_phase"]["IV-A"]
    assert row["se_test"] == pytest.approx(math.sqrt(0.9 * 0.1 / n))
    assert row["se"] == pytest.approx(math.hypot(row["se_seeds"], row["se_test"]))
