"""Rebuild the paper's released width x batch-size grid as one metrics table.

Source
------
Yang et al., NeurIPS 2021, reference code github.com/nsfzyzz/loss_landscape_taxonomy,
commit c1ec1fd59a6af5f72d4ff23679abb2f815f69101 (HEAD of our mirror, 2022-01-06).
File `workspace/checkpoint/results.tar.gz`, folder
`different_knobs_subset_10/bs_{B}/lr_decay/ResNet18_w{W}/metrics/` (ResNet18 on CIFAR-10,
lr-decay recipe, 5 seeds per cell). Files read per cell: `loss_acc.pkl` (train),
`loss_acc_test.pkl` (test), `hessian.pkl`, `curve_test.npz`,
`CKA_mixup_alpha_16.0.pkl`, `model_dist.pkl`.

Grid: widths 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128 x batch sizes 16, 24, 32,
44, 64, 92, 128, 180, 256, 364, 512, 724, 1024 = 182 cells. The tarball also holds
bs_19 and bs_27, which have no `loss_acc_test.pkl` and are not used (the notebook's
batch list leaves them out too; its width list also leaves out width 1, which is kept
here).

Metrics, as in `workspace/src/visualization/Load_temperature_plots.ipynb`
(`get_metric_val`), all means over the 5 seeds or over the 20 ordered seed pairs i != j:
- train_loss / train_acc: `loss_acc.pkl[n]['loss' / 'accuracy']`; test_loss / test_acc:
  the same from `loss_acc_test.pkl`. The pickles hold accuracy in percent; the table
  holds it as a fraction (/100).
- hessian_top: mean of `hessian.pkl[n]['top_eigenvalue'][0]`; hessian_trace: mean of
  `['trace']`. The notebook plots the natural log of these means; the table holds the
  means themselves.
- mc: from the curve's *training error in percent*, `e = curve_test.npz['tr_err']` at
  t = 0, .25, .5, .75, 1: u = argmax |e - (e[0]+e[4])/2|, mc = (e[0]+e[4])/2 - e[u].
  So mc is in points of percent training error (not a fraction).
- cka: `CKA_mixup_alpha_16.0.pkl['representation_similarity'][i][j][-1]` (the last
  entry is linear CKA of the softmax outputs; entry 0 is of the logits), mixup alpha 16.
  Plain np.mean as in the notebook, so a cell with a NaN pair is NaN (width 1 at batch
  24 and 64).
- l2: `model_dist.pkl['model_distance'][i][j]['dist']`.

paper_phase
-----------
The notebook draws heatmaps only: it contains NO phase rule and no thresholds. The
labels here are the rule DESIGN.md ("Where the phases sit") used, with its thresholds
(train loss 0.02, mc 1.0 points, CKA 0.7), written out in `paper_phase` below. It reads
the paper's table with an epsilon on mc: high loss and a barrier (mc < -eps) is I, high
loss otherwise (mc >= -eps, incl. -eps <= mc <= eps) is II. Only one cell has high loss
with |mc| <= eps (width 64, batch 32: loss 0.028, mc +0.605); it is II here.

Rebuild (from the repository root):

    git -C /work/.mirror/nsfzyzz+loss_landscape_taxonomy/repo show \
        HEAD:workspace/checkpoint/results.tar.gz > /tmp/ref/results.tar.gz
    tar xzf /tmp/ref/results.tar.gz -C /tmp/ref
    python tests/data/build_paper_grid.py /tmp/ref \
        --out tests/data/paper_resnet18_width_batch.csv

Add --drop-nan-cka for the 180-cell table DESIGN.md counts (the two NaN-CKA cells out).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SUBSET = "different_knobs_subset_10"
WIDTHS = [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128]
BATCH_SIZES = [16, 24, 32, 44, 64, 92, 128, 180, 256, 364, 512, 724, 1024]
SEEDS = range(5)
TRAIN_LOSS_THRESHOLD = 0.02
MC_THRESHOLD = 1.0
CKA_THRESHOLD = 0.7


def _pickle(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


def _pairs():
    return [(i, j) for i in SEEDS for j in SEEDS if i != j]


def cell_metrics(metrics_dir: Path) -> dict:
    train = _pickle(metrics_dir / "loss_acc.pkl")
    test = _pickle(metrics_dir / "loss_acc_test.pkl")
    hess = _pickle(metrics_dir / "hessian.pkl")
    cka = _pickle(metrics_dir / "CKA_mixup_alpha_16.0.pkl")["representation_similarity"]
    dist = _pickle(metrics_dir / "model_dist.pkl")["model_distance"]
    err = np.load(metrics_dir / "curve_test.npz")["tr_err"]
    mid = (err[0] + err[4]) / 2
    u = int(np.argmax(np.abs(err - mid)))
    return {
        "train_loss": np.mean([train[n]["loss"] for n in SEEDS]),
        "train_acc": np.mean([train[n]["accuracy"] for n in SEEDS]) / 100,
        "test_loss": np.mean([test[n]["loss"] for n in SEEDS]),
        "test_acc": np.mean([test[n]["accuracy"] for n in SEEDS]) / 100,
        "hessian_top": np.mean([hess[n]["top_eigenvalue"][0] for n in SEEDS]),
        "hessian_trace": np.mean([hess[n]["trace"] for n in SEEDS]),
        "mc": mid - err[u],
        "cka": np.mean([cka[i][j][-1] for i, j in _pairs()]),
        "l2": np.mean([dist[i][j]["dist"] for i, j in _pairs()]),
    }


def paper_phase(train_loss: float, mc: float, cka: float) -> str:
    """DESIGN.md's explicit-threshold reading of the paper's table (see module doc)."""
    high_loss = train_loss > TRAIN_LOSS_THRESHOLD
    barrier = mc < -MC_THRESHOLD
    if high_loss:
        return "I" if barrier else "II"
    if barrier:
        return "III"
    if not np.isfinite(cka):
        return "undetermined"
    return "IV-B" if cka >= CKA_THRESHOLD else "IV-A"


def build(results: Path) -> pd.DataFrame:
    root = results / SUBSET if (results / SUBSET).is_dir() else results
    rows = []
    for width in WIDTHS:
        for bs in BATCH_SIZES:
            m = cell_metrics(root / f"bs_{bs}" / "lr_decay" / f"ResNet18_w{width}" / "metrics")
            rows.append({"load": width, "temperature": bs, "load_param": "width",
                         "temperature_param": "batch_size", **m,
                         "paper_phase": paper_phase(m["train_loss"], m["mc"], m["cka"])})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path,
                    help=f"folder where results.tar.gz was unpacked (or its {SUBSET})")
    ap.add_argument("--out", type=Path, default=Path("tests/data/paper_resnet18_width_batch.csv"))
    ap.add_argument("--drop-nan-cka", action="store_true",
                    help="leave out the cells whose CKA is NaN (180 cells, as DESIGN.md)")
    args = ap.parse_args(argv)
    table = build(args.results)
    if args.drop_nan_cka:
        table = table[table["cka"].notna()]
    table.to_csv(args.out, index=False, float_format="%.6g")
    summary = table.groupby("paper_phase")["test_acc"].agg(["size", "mean"])
    print(f"{len(table)} cells -> {args.out}\n{summary.round(3)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
