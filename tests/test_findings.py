"""The paper's findings (findings.py): on the paper's own released grid they come out as the
paper says, and on small synthetic grids built so that each finding holds or fails, each
rule says both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_taxonomy import report as report_package
from landscape_taxonomy.report import findings
from landscape_taxonomy.report.figures import filename

PAPER = Path(__file__).parent / "data" / "paper_resnet18_width_batch.csv"
TH = {"train_loss": 0.1, "mc": 1.0, "cka": 0.75}
ACC = {"I": 0.60, "II": 0.55, "III": 0.80, "IV-A": 0.85, "IV-B": 0.90}


def layout(li: int, ti: int) -> str:
    """Fig. 2 on a 6 x 6 grid (ti = 5 the hottest): II hot, I narrow, III in the middle,
    IV wide: IV-A cold, IV-B between it and II."""
    if ti == 5:
        return "II"
    if li <= 1:
        return "I"
    if li <= 3:
        return "III"
    return "IV-A" if ti <= 1 else "IV-B"


def grid(load_param="width", noise=0.0, acc=None, phase_of=layout) -> tuple[pd.DataFrame,
                                                                         pd.DataFrame]:
    """(metrics, phases) of a synthetic study whose metrics follow the phase table, with a
    small deterministic jitter so that ranks and splits are defined."""
    rng = np.random.default_rng(1)
    rows = []
    for li in range(6):
        for ti in range(6):
            p = phase_of(li, ti)
            sharp = p in ("I", "II")
            j = rng.uniform(-1, 1, 6)
            rows.append({
                "load": 2.0 ** li, "temperature": 10.0 ** (ti - 5), "phase": p,
                "load_param": load_param, "temperature_param": "weight_decay",
                "train_loss": (1.0 if sharp else 0.01) * (1 + 0.1 * j[0]),
                "hessian_top": (100.0 if sharp else 5.0) * (1 + 0.1 * j[1]),
                "hessian_trace": (500.0 if sharp else 20.0) * (1 + 0.1 * j[2]),
                "mc": {"I": -10, "II": 5, "III": -5}.get(p, 0.0) + 0.1 * j[3],
                "cka": {"IV-A": 0.6, "IV-B": 0.9}.get(p, 0.5) + 0.01 * j[4],
                "l2": 10 + j[5],
                "test_acc": (acc or ACC)[p] + 0.002 * j[0],
                "test_acc_std": 0.005, "n_models": 4, "n_diverged": 0, "n_test": 10000,
                "noise": noise})
    m = pd.DataFrame(rows)
    return m.drop(columns="phase"), m[["load", "temperature", "phase"]]


def verdict(key, m, ph, th=TH, summary=None):
    return findings.evaluate(m, ph, th, summary)[key]


def test_the_paper_grid_says_what_the_paper_says(tmp_path):
    # the reference repository's released ResNet18 / CIFAR-10 grid, every threshold auto
    out, detail = tmp_path / "findings.json", tmp_path / "detail.json"
    res = subprocess.run([sys.executable, "-m", "landscape_taxonomy.cli", "findings", PAPER,
                          "--out", out, "--detail", detail], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    d = json.loads(detail.read_text())
    for key in ("F1", "F2", "F3", "F4", "F7", "F10"):
        assert d[key]["verdict"] == "holds", (key, d[key]["statistics"])
    for key in ("F5", "F6", "F8", "F9"):
        assert d[key]["verdict"] == "not testable here" and d[key]["reason"], key
    assert d["F1"]["statistics"]["orderings"]["IV-B hotter than IV-A"]  # batch: bigger = colder
    assert d["F2"]["statistics"]["lead"]["over"] == "IV-A"
    head = json.loads(out.read_text())
    assert set(head) == {f"F{i}" for i in range(1, 11)}
    assert head["F7"] == {"verdict": "holds", "confident": True,
                          "rho": pytest.approx(d["F7"]["statistics"]["rho"]["value"])}
    assert "F10 holds" in res.stdout and "F9 not testable here: needs label noise" in res.stdout


def test_f1_arrangement():
    m, ph = grid()
    f = verdict("F1", m, ph)
    assert f["verdict"] == "holds" and f["confident"]
    swapped = ph.replace({"phase": {"IV-A": "IV-B", "IV-B": "IV-A"}})
    f = verdict("F1", m, swapped)
    assert f["verdict"] == "fails" and not f["statistics"]["orderings"]["IV-B hotter than IV-A"]
    f = verdict("F1", m, ph.replace({"phase": {"III": "I"}}))
    assert f["verdict"] == "fails" and "III" in f["reason"]


def test_f2_iv_b_best_and_its_standard_error():
    m, ph = grid()
    f = verdict("F2", m, ph)
    assert f["verdict"] == "holds" and f["statistics"]["lead"]["over"] == "IV-A"
    assert f["statistics"]["lead"]["value"] == pytest.approx(0.05, abs=0.003)
    summary = {"iv_b_lead_over_iv_a": {"se": 0.04}}  # a lead of 1.25 SE: within noise
    f = verdict("F2", m, ph, summary=summary)
    assert f["headline"] == "lead_in_se" and not f["confident"]
    m2, ph2 = grid(acc={**ACC, "III": 0.95})
    f = verdict("F2", m2, ph2)
    assert f["verdict"] == "fails" and f["statistics"]["lead"]["over"] == "III"


def test_f3_tenfold_fall_at_the_hessian_transition():
    m, ph = grid()
    assert verdict("F3", m, ph)["verdict"] == "holds"
    flat = ~ph["phase"].isin(["I", "II"])
    m.loc[flat, "train_loss"] = 0.3  # a threefold fall only
    f = verdict("F3", m, ph, {**TH, "train_loss": 0.5})
    assert f["verdict"] == "fails" and f["statistics"]["fold"]["value"] < 10


def test_f4_same_hessian_other_accuracy():
    m, ph = grid()
    assert verdict("F4", m, ph)["verdict"] == "holds"
    m.loc[ph["phase"] == "III", "hessian_top"] = 60.0  # III as sharp as the sharp cells
    assert verdict("F4", m, ph)["verdict"] == "fails"
    m2, ph2 = grid(acc={**ACC, "III": 0.88})
    assert verdict("F4", m2, ph2)["verdict"] == "fails"


def test_f5_double_descent_is_located():
    m, ph = grid()
    assert verdict("F5", m, ph)["verdict"] == "not testable here"
    m, ph = grid(noise=0.1)
    f = verdict("F5", m, ph)  # I 0.60 -> III 0.80 -> IV 0.85: rises along load, no dip
    assert f["verdict"] == "fails" and f["statistics"]["dips_along_load"]["value"] == 0
    m, ph = grid(noise=0.1, acc={**ACC, "III": 0.50})  # III below I and IV along load
    f = verdict("F5", m, ph)
    assert f["verdict"] == "fails" and f["statistics"]["dips_along_load"]["value"] == 5
    dip = (m["load"] == 16) & (m["temperature"] == 1e-3)  # between IV-A and IV-B, 0.7
    m.loc[dip, "test_acc"] = 0.7
    f = verdict("F5", m, ph)
    assert f["verdict"] == "holds"
    assert [d["cell"] for d in f["dips"]["temperature"]] == [{"load": 16, "temperature": 1e-3}]
    dips = f["dips"]["load"]
    assert {d["phase"] for d in dips} == {"III"} and all(d["depth_in_se"] >= 2 for d in dips)
    assert all(d["at_hessian_transition"] for d in dips if d["cell"]["load"] == 4)


def test_f6_sharp_beats_the_flat_poorly_connected_neighbour():
    m, ph = grid(noise=0.1)
    f = verdict("F6", m, ph)
    assert f["verdict"] == "fails" and f["statistics"]["sharp_minus_iii"]["value"] < 0
    m, ph = grid(noise=0.1, acc={**ACC, "III": 0.50})
    f = verdict("F6", m, ph)
    assert f["verdict"] == "holds" and f["confident"]
    assert verdict("F6", *grid())["verdict"] == "not testable here"


def test_f7_width_buys_connectivity():
    m, ph = grid()
    assert verdict("F7", m, ph)["verdict"] == "holds"
    m["mc"] = -m["load"]  # barriers grow with width
    assert verdict("F7", m, ph)["verdict"] == "fails"
    assert verdict("F7", *grid(load_param="subset"))["verdict"] == "not testable here"


def test_f8_data_buys_similarity_not_connectivity():
    m, ph = grid(load_param="subset")
    m["cka"] = 0.4 + 0.1 * np.log2(m["load"])
    m["mc"] = -np.log2(m["load"])
    m["test_acc"] = 0.5 + 0.05 * np.log2(m["load"])
    m["hessian_top"] = 5 + np.log2(m["load"])  # sharper with more data, as in Figs. 6-7
    m["hessian_trace"] = 20 + np.log2(m["load"])
    m["train_loss"] = 0.01 * m["load"]
    m["l2"] = 10.0
    f = verdict("F8", m, ph)
    assert f["verdict"] == "holds" and f["statistics"]["best_tracker"] == "cka"
    m["cka"] = 0.9 - 0.1 * np.log2(m["load"])
    assert verdict("F8", m, ph)["verdict"] == "fails"
    assert verdict("F8", *grid())["verdict"] == "not testable here"


def test_f9_clean_labels_buy_connectivity():
    m, ph = grid(load_param="noise")
    m["mc"] = -m["load"]
    m["cka"] = 1 - 0.05 * m["load"]
    m["train_loss"] = 0.001
    m["hessian_trace"] = 20.0 + 0.1 * m["load"]
    f = verdict("F9", m, ph)
    assert f["verdict"] == "holds" and f["statistics"]["fitted_trace_fold"]["value"] < 2
    m["hessian_trace"] = 20.0 * m["load"]  # the trace grows 32x with the noise
    assert verdict("F9", m, ph)["verdict"] == "fails"


def test_f10_global_beats_local_among_flat_cells():
    m, ph = grid()
    flat = m["train_loss"] <= TH["train_loss"]
    rng = np.random.default_rng(3)
    m.loc[flat, "test_acc"] = np.linspace(0.8, 0.95, flat.sum())
    m.loc[flat, "cka"] = np.linspace(0.6, 0.9, flat.sum())  # CKA ranks the fitted cells
    m.loc[flat, "mc"] = 0.0
    m.loc[flat, "hessian_top"] = rng.permutation(np.linspace(3, 8, flat.sum()))
    m.loc[flat, "hessian_trace"] = rng.permutation(np.linspace(15, 30, flat.sum()))
    f = verdict("F10", m, ph)
    assert f["verdict"] == "holds" and f["confident"]
    assert f["statistics"]["spearman"]["flat_cells"]["cka"]["value"] == pytest.approx(1.0)
    m.loc[flat, "hessian_top"] = np.linspace(8, 3, flat.sum())  # the Hessian ranks them
    m.loc[flat, "cka"] = rng.permutation(np.linspace(0.6, 0.9, flat.sum()))
    m.loc[flat, "mc"] = rng.normal(0, 0.1, flat.sum())
    f = verdict("F10", m, ph)
    assert f["verdict"] == "fails" and f["confident"]


def test_same_tables_same_bytes(tmp_path):
    m, ph = grid(noise=0.1)
    a = json.dumps(findings.evaluate(m, ph, TH), sort_keys=True, default=str)
    b = json.dumps(findings.evaluate(m, ph, TH), sort_keys=True, default=str)
    assert a == b


def test_any_grid_gives_a_verdict_or_a_reason():
    # cut grids, random phases, missing columns: every finding answers, none raises
    rng = np.random.default_rng(0)
    for _ in range(60):
        m, ph = grid(load_param=str(rng.choice(["width", "subset", "noise"])),
                     noise=float(rng.choice([0.0, 0.1])))
        keep = rng.choice(len(m), rng.integers(1, len(m) + 1), replace=False)
        m, ph = m.iloc[keep].reset_index(drop=True), ph.iloc[keep].reset_index(drop=True)
        ph["phase"] = rng.choice(list(ACC), len(ph))
        for c in ("mc", "cka", "hessian_top", "hessian_trace", "test_acc_std"):
            if rng.random() < 0.2:
                m[c] = np.nan
        for key, f in findings.evaluate(m, ph, TH).items():
            assert f["verdict"] in ("holds", "fails", "not testable here"), key
            assert f["verdict"] != "not testable here" or f["reason"], key


def test_findings_figures_of_a_published_grid(tmp_path):
    # findings then plot, as the two stages run them: the table, the lines and the scatter
    cli = [sys.executable, "-m", "landscape_taxonomy.cli"]
    detail, phases = tmp_path / "detail.json", tmp_path / "phases.csv"
    for args in (["classify", PAPER, "--out", phases],
                 ["findings", PAPER, "--out", tmp_path / "f.json", "--detail", detail],
                 ["plot", "--metrics", PAPER, "--phases", phases, "--findings", detail,
                  "--out", tmp_path / "figs"]):
        res = subprocess.run(cli + list(map(str, args)), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    for name in ("findings", "accuracy_lines", "scatter"):
        assert (tmp_path / "figs" / f"{filename(name)}.png").stat().st_size > 5000, name
    svg = (tmp_path / "figs" / "02_findings.svg").read_text()
    assert svg.index(">F2<") < svg.index(">F10<")  # in the findings' order, not the text's
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = subprocess.run(cli + ["plot", "--metrics", str(PAPER), "--findings", str(bad),
                                "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--findings" in res.stderr


def report_modules() -> list[str]:
    """Every module of the report package (report/, findings/ included)."""
    root = Path(report_package.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.append(".".join(["landscape_taxonomy", *parts[:-1 if parts[-1] == "__init__"
                                                             else None]]))
    return names


def test_the_report_side_never_imports_torch():
    # classify, findings, plot and check-params read tables and params only: they start in
    # a second, and run where torch is not installed. Every module of report/, and the
    # commands and checks that drive them, imported one by one in a fresh process.
    modules = [*report_modules(), "landscape_taxonomy.cli.app",
               "landscape_taxonomy.cli.report", "landscape_taxonomy.cli.check_params",
               "landscape_taxonomy.pipeline.check_params"]
    assert "landscape_taxonomy.report.findings.core" in modules
    assert "landscape_taxonomy.report.figures" in modules
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "    assert 'torch' not in sys.modules, f'{name} imported torch'\n")
    res = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


def test_the_mc_heatmap_marks_the_barriers_the_phases_used(tmp_path):
    cli = [sys.executable, "-m", "landscape_taxonomy.cli"]
    summary, phases = tmp_path / "s.json", tmp_path / "p.csv"
    for args in (["classify", PAPER, "--out", phases, "--summary", summary,
                  "--mc-threshold", "1.0"],
                 ["plot", "--metrics", PAPER, "--summary", summary, "--out", tmp_path / "f"]):
        res = subprocess.run(cli + list(map(str, args)), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    svg = (tmp_path / "f" / f"{filename('heatmap_mc')}.svg").read_text()
    barriers = int((pd.read_csv(PAPER)["mc"] < -1.0).sum())
    assert 0 < barriers < 182 and svg.count(">×</text>") == barriers
    assert "mc &lt; −1 (phase.mc_threshold)" in svg or "mc < −1 (phase.mc_threshold)" in svg
