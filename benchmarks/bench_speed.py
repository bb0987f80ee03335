"""The project's heavy paths against the straightforward way, same process, same inputs.

    python benchmarks/bench_speed.py [--reps 3] [--only train|hessian|curve]

1. training every seed of a cell: train_cell (seeds stacked where that pays, tensors
   batched by index, fused SGD) against the paper code's way (one model at a time, a
   DataLoader per epoch), on three cells and on every cell of the default grid;
2. Hessian top eigenvalue and trace: ours against pyhessian's eigenvalues() and trace(),
   in all and part by part (power iteration; Hutchinson);
3. one mode-connectivity curve, fit and evaluated: ours against a plain per-step loop
   (DataLoader batches, every path point measured on its own);
(The default `dvc repro`'s wall time and peak memory: bench_incremental.py --default.)
Prints a markdown table: case, ours, theirs, ratio, and a check that results agree.
Both ways run in this one process with the allocator setting the project's workers use
(executor.tune_allocator; --plain-allocator leaves glibc's default).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import compare, digits_train, machine, trained_model
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from landscape_taxonomy.cells import grid
from landscape_taxonomy.cells.executor.guard import tune_allocator
from landscape_taxonomy.config.loading import load_params
from landscape_taxonomy.metrics import curves
from landscape_taxonomy.metrics.cell import error_with_fresh_bn, hessian_of_models
from landscape_taxonomy.pipeline import keys as cell_keys
from landscape_taxonomy.training.loop import train_cell, use_vectorized
from landscape_taxonomy.training.models import build_model
from landscape_taxonomy.training.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
ROWS = []


def row(case, ours, theirs, agree, unit="s"):
    ROWS.append(f"| {case} | {ours:.2f} {unit} | {theirs:.2f} {unit} | {theirs / ours:.2f}x "
                f"| {agree} |")
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


def ours_training(width, x, y, recipe):
    return train_cell(arch="cnn", width=width, input_shape=(1, 8, 8), n_classes=10, x=x, y=y,
                      recipe=recipe, seeds=[0, 1, 2], device=torch.device("cpu"))


def how(width, recipe):
    model = build_model("cnn", width, (1, 8, 8), 10, seed=0)
    return "stacked" if use_vectorized("auto", model, recipe.batch_size, 3,
                                       torch.device("cpu")) else "seed by seed"


def bench_training(x, y, reps):
    for width, bs in ((2, 16), (4, 64), (16, 16), (16, 256)):
        recipe = Recipe.from_config(batch_size=bs, max_epochs=5, stop_tol=0.0)
        ours, theirs, res, _ = compare(
            lambda r: ours_training(width, x, y, recipe),
            lambda r: paper_style_training(width, x, y, recipe, [0, 1, 2]), reps)
        loss = res[0].log[-1]["train_loss"]
        row(f"1. train 3 seeds, cnn width {width}, batch {bs}, 5 epochs ({how(width, recipe)})",
            ours, theirs, f"final loss {loss:.3f}")
    # Every cell of the default grid (params.yaml), 3 epochs each: where the study's
    # training time actually goes.
    p = load_params(ROOT / "params.yaml")
    cells = [(c.width, dataclasses.replace(cell_keys.recipe_of(p, c), max_epochs=3,
                                           stop_tol=0.0)) for c in grid.cells(p)]
    ours, theirs, _, _ = compare(
        lambda _: [ours_training(w, x, y, r) for w, r in cells],
        lambda _: [paper_style_training(w, x, y, r, [0, 1, 2]) for w, r in cells], reps)
    g = p.grid
    row(f"1. train 3 seeds of every default-grid cell ({g.load.param} "
        f"{min(g.load.values):g}-{max(g.load.values):g} x {g.temperature.param} "
        f"{min(g.temperature.values):g}-{max(g.temperature.values):g}), 3 epochs",
        ours, theirs, "")


# -- 2. Hessian --------------------------------------------------------------------------

def bench_hessian(x, y, reps, samples=500):
    """A cell's three models: ours (hessian_of_models, as compute-metrics runs it) against
    pyhessian's eigenvalues() and trace(), model by model, each part timed on its own.

    Each rep draws other random vectors (seed = rep on both sides): the stopping rules end
    after a random number of products, so one seed can favour either side. Totals over
    the reps are compared, and the time per unit of work: per power-iteration product,
    and per Hutchinson probe (ours computes up to 3 probes a model past the stopping
    point, the price of 4 per pass; they are counted in its time, not in its probes).
    """
    import importlib

    import pyhessian

    from landscape_taxonomy.metrics.curvature import hessian

    their_module = importlib.import_module("pyhessian.hessian")
    plain_hvp, calls = their_module.hessian_vector_product, [0]

    def counted_hvp(*args, **kwargs):
        calls[0] += 1
        return plain_hvp(*args, **kwargs)

    their_module.hessian_vector_product = counted_hvp
    clock = {"eig": 0.0, "trace": 0.0}

    def timed(fn, part):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            clock[part] += time.perf_counter() - t0
            return out
        return run

    plain_eig, plain_traces = hessian.top_eigenvalues, hessian.traces
    hessian.top_eigenvalues = timed(plain_eig, "eig")
    hessian.traces = timed(plain_traces, "trace")
    xs, ys = x[:samples], y[:samples]
    for width in (1, 4, 16):
        models = [trained_model(width, s, x, y, epochs=10) for s in range(3)]
        t = {k: 0.0 for k in ("ours", "theirs", "ours_eig", "ours_tr", "their_eig",
                              "their_tr")}
        n = {k: 0 for k in ("ours_eig", "ours_tr", "their_eig", "their_tr")}

        def ours_fn(rep):
            clock.update(eig=0.0, trace=0.0)
            t0 = time.perf_counter()
            # PyHessian's algorithms on our products (method pyhessian): the same work on
            # both sides; the default Lanczos estimators are bench_curvature.py's
            res = hessian_of_models(models, xs, ys, samples="all", max_iter=100, tol=1e-3,
                                    repeats=1, chunk=samples, seed=rep, method="pyhessian")
            t["ours"] += time.perf_counter() - t0
            t["ours_eig"] += clock["eig"]
            t["ours_tr"] += clock["trace"]
            runs = [r["runs"][0] for r in res]
            n["ours_eig"] += sum(r["top_iters"] for r in runs)
            n["ours_tr"] += sum(r["trace_probes"] for r in runs)
            return [r["top"] for r in res]

        def theirs_fn(rep):
            torch.manual_seed(rep)
            tops = []
            t0 = time.perf_counter()
            for m in models:
                h = pyhessian.hessian(m, torch.nn.CrossEntropyLoss(), data=(xs, ys), cuda=False)
                calls[0], t1 = 0, time.perf_counter()
                tops.append(h.eigenvalues(maxIter=100, tol=1e-3)[0][0])
                t2 = time.perf_counter()
                n["their_eig"] += calls[0]
                n["their_tr"] += len(h.trace(maxIter=100, tol=1e-3))
                t["their_eig"] += t2 - t1
                t["their_tr"] += time.perf_counter() - t2
            t["theirs"] += time.perf_counter() - t0
            return tops

        _, _, ours_top, their_top = compare(ours_fn, theirs_fn, reps)
        tops = "/".join(f"{v:.2f}" for v in ours_top)
        their_tops = "/".join(f"{v:.2f}" for v in their_top)
        what = f"3 models, cnn width {width}, {samples} samples, {reps} seeds in all"
        row(f"2. Hessian top eig + trace (tol 1e-3) of {what}", t["ours"], t["theirs"],
            f"top {tops} vs {their_tops}")
        row(f"2. power iteration, per product ({n['ours_eig']} vs {n['their_eig']} products)",
            t["ours_eig"] / n["ours_eig"] * 1e3, t["their_eig"] / n["their_eig"] * 1e3, "",
            unit="ms")
        row(f"2. Hutchinson, per probe ({n['ours_tr']} vs {n['their_tr']} probes)",
            t["ours_tr"] / n["ours_tr"] * 1e3, t["their_tr"] / n["their_tr"] * 1e3, "",
            unit="ms")
    their_module.hessian_vector_product = plain_hvp
    hessian.top_eigenvalues, hessian.traces = plain_eig, plain_traces


# -- 3. mode connectivity ----------------------------------------------------------------

def plain_error(model, x, y):
    """Training error (%) the plain way: swa_utils.update_bn, then an eval-mode pass."""
    loader = DataLoader(TensorDataset(x, y), batch_size=128)
    torch.optim.swa_utils.update_bn(loader, model)
    model.eval()
    with torch.no_grad():
        wrong = sum((model(xb).argmax(1) != yb).sum().item() for xb, yb in loader)
    return 100.0 * wrong / len(y)


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
        errors[path].append(plain_error(m, x, y))
    return curves.mc_from_errors(errors["curve"])[0]


def bench_curve(x, y, reps, epochs=20):
    for width in (4, 16):
        m0, m1 = trained_model(width, 0, x, y), trained_model(width, 1, x, y)
        a, b = curves.params_of(m0.state_dict(), m0), curves.params_of(m1.state_dict(), m0)
        ends = (error_with_fresh_bn(m0, x, y), error_with_fresh_bn(m1, x, y))
        ours, theirs, res, mc = compare(
            lambda r: curves.connect(
                m0, m0.state_dict(), m1.state_dict(), x, y, epochs=epochs, lr=0.01,
                momentum=0.9, batch_size=128, weight_decay=5e-4, points=5, seed=0,
                endpoint_errors=ends, endpoint_tol=2.0),
            lambda r: plain_curve(m0, a, b, x, y, epochs, 5, 0), reps)
        row(f"3. curve fit ({epochs} epochs) + 5-point profile, cnn width {width}", ours, theirs,
            f"mc {res['mc']:.2f} vs {mc:.2f} (different batch order)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=["train", "hessian", "curve"], default=None)
    ap.add_argument("--plain-allocator", action="store_true")
    args = ap.parse_args()
    if not args.plain_allocator:
        tune_allocator()
    print(machine())
    print("| case | ours | straightforward | speed-up | agreement |\n|---|---|---|---|---|")
    x, y = digits_train()
    if args.only in (None, "train"):
        bench_training(x, y, args.reps)
    if args.only in (None, "hessian"):
        bench_hessian(x, y, args.reps)
    if args.only in (None, "curve"):
        bench_curve(x, y, args.reps)


if __name__ == "__main__":
    main()
