"""The project's heavy paths against the straightforward way, same process, same inputs.

    python benchmarks/bench_speed.py [--reps 3] [--repro]

1. training every seed of a cell: train_cell (seeds stacked, tensors batched by index)
   against the paper code's way (one model at a time, a DataLoader per epoch);
2. Hessian top eigenvalue and trace: ours against pyhessian's eigenvalues() and trace();
3. one mode-connectivity curve, fit and evaluated: ours against a plain per-step loop
   (DataLoader batches, every path point measured on its own);
4. with --repro, the default `dvc repro` in a temporary copy: wall time and peak memory.
Prints a markdown table: case, ours, theirs, ratio, and a check that results agree.
"""

from __future__ import annotations

import argparse
import copy
import itertools

import torch
import torch.nn.functional as F
from common import digits_train, machine, timeit, trained_model
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from landscape_taxonomy.metrics import curves
from landscape_taxonomy.metrics.cell import error_with_fresh_bn, hessian_of_models
from landscape_taxonomy.models import build_model
from landscape_taxonomy.train import Recipe, train_cell

ROWS = []


def row(case, ours, theirs, agree):
    ROWS.append(f"| {case} | {ours:.2f} s | {theirs:.2f} s | {theirs / ours:.2f}x | {agree} |")
    print(ROWS[-1], flush=True)


# -- 1. training -------------------------------------------------------------------------

def paper_style_training(width, x, y, recipe, seeds):
    """One model at a time; a shuffled DataLoader re-made every epoch."""
    states = []
    for s in seeds:
        model = build_model("cnn", width, (1, 8, 8), 10, seed=s)
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
        torch.manual_seed(s)
        for _ in range(recipe.max_epochs):
            model.train()
            for xb, yb in DataLoader(TensorDataset(x, y), batch_size=recipe.batch_size,
                                     shuffle=True):
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        states.append(model.state_dict())
    return states


def bench_training(x, y, reps):
    for width, bs in ((2, 16), (4, 64), (16, 256)):
        recipe = Recipe(batch_size=bs, max_epochs=5, stop_tol=0.0)
        ours, _, res = timeit(lambda: train_cell(
            arch="cnn", width=width, input_shape=(1, 8, 8), n_classes=10, x=x, y=y,
            recipe=recipe, seeds=[0, 1, 2], device=torch.device("cpu")), reps)
        theirs, _, _ = timeit(lambda: paper_style_training(width, x, y, recipe, [0, 1, 2]),
                              reps)
        loss = res[0].log[-1]["train_loss"]
        row(f"1. train 3 seeds, cnn width {width}, batch {bs}, 5 epochs", ours, theirs,
            f"final loss {loss:.3f}")


# -- 2. Hessian --------------------------------------------------------------------------

def bench_hessian(x, y, reps, samples=500):
    """A cell's three models: ours (stacked on a GPU) against pyhessian model by model."""
    import pyhessian

    xs, ys = x[:samples], y[:samples]
    for width in (4, 16):
        models = [trained_model(width, s, x, y, epochs=10) for s in range(3)]
        stack = torch.cuda.is_available()  # as the pipeline decides (cell.py)
        ours, _, res = timeit(lambda: hessian_of_models(
            models, xs, ys, samples="all", max_iter=100, tol=1e-3, repeats=1,
            chunk=samples, seed=0, stack=stack), reps)

        def theirs_fn():
            out = []
            for m in models:
                h = pyhessian.hessian(m, torch.nn.CrossEntropyLoss(), data=(xs, ys), cuda=False)
                top = h.eigenvalues(maxIter=100, tol=1e-3)[0][0]
                tr = h.trace(maxIter=100, tol=1e-3)
                out.append((top, sum(tr) / len(tr), len(tr)))
            return out

        theirs, _, ref = timeit(theirs_fn, reps)
        tops = "/".join(f"{r['top']:.2f}" for r in res)
        their_tops = "/".join(f"{t:.2f}" for t, _, _ in ref)
        probes = sum(r["runs"][0]["trace_probes"] for r in res), sum(n for *_, n in ref)
        row(f"2. Hessian top eig + trace of 3 models, cnn width {width}, {samples} samples"
            f"{' (stacked)' if stack else ''}", ours, theirs,
            f"top {tops} vs {their_tops}; trace probes {probes[0]} vs {probes[1]}")


# -- 3. mode connectivity ----------------------------------------------------------------

def plain_curve(model, a, b, x, y, epochs, points, seed):
    """The straightforward loop: DataLoader batches, each point's BN and error on its own."""
    bend = {k: ((a[k] + b[k]) / 2).clone().requires_grad_(True) for k in a}
    opt = torch.optim.SGD(list(bend.values()), lr=0.01, momentum=0.9)
    torch.manual_seed(seed)
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = 0.01 * curves.curve_lr_factor(epoch / epochs)
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True):
            t = torch.rand(()).item()
            w = {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * bend[k] + t ** 2 * b[k] for k in a}
            buffers = {k: v.clone() for k, v in model.named_buffers()}
            model.train()
            out = functional_call(model, {**w, **buffers}, (xb,))
            loss = F.cross_entropy(out, yb) + 0.5 * 5e-4 * sum((p * p).sum() for p in w.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    errors = {"curve": [], "line": []}
    for path, t in itertools.product(errors, [i / (points - 1) for i in range(points)]):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for k, p in m.named_parameters():
                mid = bend[k] if path == "curve" else (a[k] + b[k]) / 2
                p.copy_((1 - t) ** 2 * a[k] + 2 * t * (1 - t) * mid + t ** 2 * b[k])
        errors[path].append(error_with_fresh_bn(m, x, y, batch_size=128))
    return curves.mc_from_errors(errors["curve"])[0]


def bench_curve(x, y, reps, epochs=20):
    for width in (4, 16):
        m0, m1 = trained_model(width, 0, x, y), trained_model(width, 1, x, y)
        a, b = curves.params_of(m0.state_dict(), m0), curves.params_of(m1.state_dict(), m0)
        ends = (error_with_fresh_bn(m0, x, y), error_with_fresh_bn(m1, x, y))
        ours, _, res = timeit(lambda: curves.connect(
            m0, m0.state_dict(), m1.state_dict(), x, y, epochs=epochs, lr=0.01,
            momentum=0.9, batch_size=128, weight_decay=5e-4, points=5, seed=0,
            endpoint_errors=ends, endpoint_tol=2.0), reps)
        theirs, _, mc = timeit(lambda: plain_curve(m0, a, b, x, y, epochs, 5, 0), reps)
        row(f"3. curve fit ({epochs} epochs) + 5-point profile, cnn width {width}", ours, theirs,
            f"mc {res['mc']:.2f} vs {mc:.2f} (different batch order)")


# -- 4. dvc repro ------------------------------------------------------------------------

def bench_repro():
    import resource
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "proj"
        shutil.copytree(root, dst, ignore=shutil.ignore_patterns(
            ".venv", ".cells", "data", "models", "__pycache__", "reports", ".git", "dvc.lock"))
        env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:"
               + __import__("os").environ["PATH"]}
        for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q", "-f"]):
            subprocess.run(cmd, cwd=dst, check=True, env=env)
        shutil.copytree(root / ".dvc" / "plots", dst / ".dvc" / "plots", dirs_exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=dst, check=True, env=env)
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ROWS.append(f"| 4. default `dvc repro` (empty cell store) | {wall:.0f} s | | | "
                f"peak memory {peak:.0f} MiB |")
    print(ROWS[-1], flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--repro", action="store_true")
    ap.add_argument("--only", choices=["train", "hessian", "curve"], default=None)
    args = ap.parse_args()
    print(machine())
    print("| case | ours | straightforward | speed-up | agreement |\n|---|---|---|---|---|")
    x, y = digits_train()
    if args.only in (None, "train"):
        bench_training(x, y, args.reps)
    if args.only in (None, "hessian"):
        bench_hessian(x, y, args.reps)
    if args.only in (None, "curve"):
        bench_curve(x, y, args.reps)
    if args.repro:
        bench_repro()


if __name__ == "__main__":
    main()
