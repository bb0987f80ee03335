"""Phase boundaries read off the data, checked on made-up tables with known groups and on
the paper's released ResNet18 / CIFAR-10 grid (tests/data, rebuilt from the reference
repository's results by tests/data/build_paper_grid.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_taxonomy.errors import ConfigError
from landscape_taxonomy.report import stages as report
from landscape_taxonomy.report import thresholds
from landscape_taxonomy.report.phases import classify

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


def test_auto_mc_spreads_are_at_least_one_training_example():
    # connected pairs that agree exactly (mc 0 and 0: spread 0) measured mc to one training
    # example, 100 / n_train points: with n_train in the table their spread counts as that,
    # not as missing (without it, 3 of these 5 flat cells would fall back to all cells)
    df = grid([0.01] * 5 + [1.0] * 3, [0, 0, 0, -0.1, -2, -30, -40, -20], [0.5] * 8,
              mc_std=[0, 0, 0, 0.1, 0.5, 15, 14, 16])
    assert "all cells" in thresholds.auto_mc(df, 0.1).method
    df["n_train"] = 500
    t = thresholds.auto_mc(df, 0.1)
    assert "flat cells" in t.method and t.details["cells"] == 5
    assert t.value == pytest.approx(2 * 100 / 500)  # median of 0.2, 0.2, 0.2, 0.2, 0.5


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


# -- one labelling across grids: thresholds from a file; degenerate auto splits said -----

def write_grid(path: Path, losses, mcs, ckas, mc_std) -> Path:
    df = grid(losses, mcs, ckas, mc_std=mc_std)
    df["test_acc"] = 0.5
    df.to_csv(path, index=False)
    return path


def run_classify(tmp_path, src: Path, name: str, **kw):
    """report.classify on `src`: (phases, summary, the warning lines it gave)."""
    lines = []
    out, summary = tmp_path / f"{name}.csv", tmp_path / f"{name}.json"
    report.classify(src, out, summary, warn=lines.append, **kw)
    return pd.read_csv(out, keep_default_na=False), json.loads(summary.read_text()), lines


FLAT, SHARP = [0.01, 0.011, 0.0105, 0.0102], [0.3, 0.5, 0.8, 0.4]
CONNECTED = dict(mcs=[0.0, 0.1, -0.2, 0.05] + [-20, -1, -30, 0],
                 ckas=[0.9, 0.92, 0.5, 0.55] + [0.3] * 4,
                 mc_std=[0.5] * 4 + [10] * 4)


def test_groups_less_than_tenfold_apart_are_warned_recorded_and_flagged(tmp_path):
    # the noise-0.3 case: every cell fits about as badly, the split still cuts in two
    src = write_grid(tmp_path / "m.csv", [0.1, 0.11, 0.1, 0.105, 0.15, 0.16, 0.155, 0.15],
                     **CONNECTED)
    phases, summary, lines = run_classify(tmp_path, src, "near")
    th = summary["thresholds"]["train_loss"]["details"]
    assert not th["tenfold"] and th["fold_between_groups"] == pytest.approx(1.5, abs=0.05)
    assert lines == summary["warnings"] and len(lines) == 1
    assert lines[0].startswith("warning: phase.train_loss_threshold auto: the two groups are "
                               "only 1.5x apart (no tenfold fall)")
    assert lines[0].endswith("set a number or phase.thresholds_from")
    assert (phases["flag"] == "train_loss_split").all()
    assert list(phases.columns[:6]) == ["load", "temperature", "phase", "phase_margin",
                                        "margin_metric", "boundary"]


def test_a_tenfold_table_gets_no_warning_and_no_flag(tmp_path):
    src = write_grid(tmp_path / "m.csv", FLAT + SHARP, **CONNECTED)
    phases, summary, lines = run_classify(tmp_path, src, "far")
    assert summary["thresholds"]["train_loss"]["details"]["tenfold"]
    assert lines == [] and summary["warnings"] == []
    assert (phases["flag"] == "").all()
    assert list(phases["phase"]) == ["IV-B", "IV-B", "IV-A", "IV-A", "I", "II", "I", "II"]


@pytest.mark.parametrize("losses,mcs,ckas,mc_std,flags,says", [
    # (b) three flat cells with a spread: the band is every cell's, widened by the sharp
    (FLAT + SHARP, [0, -5, 0.1, 0.05, -20, -1, -40, 0], [0.9, 0.6, 0.5, 0.92] + [0.3] * 4,
     [0.5] * 3 + [np.nan] + [15] * 4, ["mc_band"] * 8, "only 3 flat cells have mc's spread"),
    # (b) no spread at all: the band is a split of the barrier depths
    (FLAT * 2 + SHARP, [0, -0.1, 0.05, -0.2, -8, -12, -9, -0.02, -20, -1, -30, 0],
     [0.9, 0.92, 0.5, 0.55, 0.3, 0.3, 0.3, 0.52] + [0.3] * 4, None, ["mc_band"] * 12,
     "no spread of mc over seed pairs"),
    # (c) three flat, connected cells: too few to split by CKA, they stay undetermined
    (FLAT + SHARP, [0, 0.1, -0.2, -9] + [-20, -1, -30, 0], [0.9, 0.92, 0.5, 0.5] + [0.3] * 4,
     [0.5] * 4 + [10] * 4, ["cka_split"] * 3 + [""] * 5, "3 cells stay undetermined"),
    # (d) one sharp cell against seven flat ones
    ([0.01, 0.011, 0.0105, 0.0102, 0.012, 0.0101, 0.0103, 0.5], [0.0] * 7 + [-20],
     [0.9, 0.92, 0.5, 0.55, 0.91, 0.52, 0.93, 0.3], [0.5] * 7 + [10],
     [""] * 7 + ["train_loss_split"], "the split leaves 1 cell sharp against 7"),
])
def test_each_degenerate_auto_split_is_one_warning_and_flags_its_cells(
        tmp_path, losses, mcs, ckas, mc_std, flags, says):
    src = write_grid(tmp_path / "m.csv", losses, mcs, ckas, mc_std)
    phases, summary, lines = run_classify(tmp_path, src, "p")
    assert len(lines) == 1 and says in lines[0], lines
    assert summary["warnings"] == lines
    assert list(phases["flag"]) == flags


# A baseline grid, and a grid that reuses three of its flat cells (the same models: the
# same metrics) beside five new, badly fitting cells whose mc pairs disagree by 15 points.
# Rebuilt there, the mc band comes from every cell's spread (3 flat cells have one) and
# swallows the reused cell's barrier of 5 points, and the CKA split has 3 cells: relabelled.
BASE = dict(losses=FLAT + [0.0101, 0.0103] + SHARP + [0.6, 0.7],
            mcs=[0.0, 0.1, -5.0, 0.05, -0.3, 0.2] + [-20, -1, -30, 0, -15, -2],
            ckas=[0.9, 0.5, 0.6, 0.92, 0.45, 0.95] + [0.3] * 6,
            mc_std=[0.5] * 6 + [10] * 6)
REUSED = [0, 1, 2]  # IV-B, IV-A, III on the baseline grid


def reusing_grid() -> dict:
    pick = {k: [v[i] for i in REUSED] for k, v in BASE.items()}
    return {"losses": pick["losses"] + [0.3, 0.5, 0.8, 0.4, 0.6],
            "mcs": pick["mcs"] + [-20, -1, -30, 0, -9], "ckas": pick["ckas"] + [0.3] * 5,
            "mc_std": pick["mc_std"] + [15] * 5}


def test_thresholds_from_a_summary_keep_the_baselines_labels(tmp_path):
    base, base_summary, lines = run_classify(
        tmp_path, write_grid(tmp_path / "base.csv", **BASE), "base")
    assert lines == [] and list(base["phase"][REUSED]) == ["IV-B", "IV-A", "III"]
    src = write_grid(tmp_path / "new.csv", **reusing_grid())
    auto, _, auto_lines = run_classify(tmp_path, src, "auto")
    assert auto["phase"][2] != "III" and len(auto_lines) == 2  # relabelled, and said so
    kept, summary, lines = run_classify(tmp_path, src, "kept",
                                        thresholds_from=tmp_path / "base.json")
    assert list(kept["phase"][:3]) == ["IV-B", "IV-A", "III"]
    assert lines == [] and summary["warnings"] == [] and (kept["flag"] == "").all()
    for k, t in summary["thresholds"].items():
        assert t["value"] == base_summary["thresholds"][k]["value"]
        assert t["method"] == f"from {tmp_path / 'base.json'}"
        assert t["details"]["method_there"] == base_summary["thresholds"][k]["method"]
    # a number given still wins over the file's
    _, summary, _ = run_classify(tmp_path, src, "given", thresholds_from=tmp_path / "base.json",
                                 mc_threshold=6.0)
    assert summary["thresholds"]["mc"] == {"value": 6.0, "method": "given", "details": {}}


def test_a_plain_thresholds_file_and_one_a_number_makes_unneeded():
    th = {"train_loss": 0.05, "mc": 1.0, "cka": 0.7}
    got = thresholds.resolve(paper(), mc=2.0, baseline={
        k: thresholds.Threshold(v, "from t.json") for k, v in th.items() if k != "mc"})
    assert {k: v.value for k, v in got.items()} == {**th, "mc": 2.0}
    assert got["mc"].method == "given" and got["cka"].method == "from t.json"


@pytest.mark.parametrize("text,needed,message", [
    (None, ("train_loss",), "file does not exist"),
    ("{not json", ("train_loss",), "not valid JSON"),
    ("[0.1, 1, 0.7]", ("train_loss",), "must hold a JSON object"),
    ('{"train_loss": 0.1, "mc": 1}', ("train_loss", "cka"),
     "has no cka threshold (phase.cka_threshold is auto); give phase.cka_threshold a num"),
    ('{"thresholds": {"cka": {"value": null, "method": "too few"}}}', ("cka",),
     "has no value for cka (null"),
    ('{"train_loss": -1}', ("train_loss",), "train_loss must be a number > 0, got -1"),
])
def test_a_bad_thresholds_file_is_one_config_error(tmp_path, text, needed, message):
    path = tmp_path / "t.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as e:
        thresholds.baseline(path, needed)
    assert str(e.value).startswith(f"phase.thresholds_from: {path}")
    assert message in str(e.value) and "\n" not in str(e.value)
    # only the thresholds left at auto need a value
    if text is not None and text.startswith('{"train_loss": 0.1'):
        assert thresholds.baseline(path, ("train_loss", "mc"))["mc"].value == 1.0


def test_the_shipped_default_thresholds_are_the_committed_default_studys():
    # thresholds/default.json is what `dvc exp run -S phase.thresholds_from=...` compares an
    # experiment against: the committed default study's own auto thresholds (rewrite it after
    # the default changes: thresholds/README.md). Its metrics table is a DVC output, absent
    # from a clone, so the summary git holds is the reference.
    root = Path(__file__).resolve().parents[1]
    path = root / "thresholds" / "default.json"
    committed = json.loads((root / "reports" / "summary.json").read_text())
    assert committed["warnings"] == [] and json.loads(path.read_text())["warnings"] == []
    read = thresholds.baseline(path, tuple(committed["thresholds"]))
    assert {k: t.value for k, t in read.items()} == {
        k: t["value"] for k, t in committed["thresholds"].items()}
