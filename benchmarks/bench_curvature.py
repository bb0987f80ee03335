"""Hessian estimators and engines: accuracy and cost, old against new, measured.

    python benchmarks/bench_curvature.py [--archs mlp cnn] [--widths ...] [--seeds 5]
        [--epochs 10] [--resnet-widths 8 16 32] [--resnet-device cuda|cpu] [--json PATH]
        [--quick]
    python benchmarks/bench_curvature.py --quick --resnet-device cpu   # smoke run, CPU

1. CPU, estimators (metrics.hessian.method, .trace): pyhessian (power iteration +
   Hutchinson with PyHessian's stop rules) against lanczos (Lanczos top eigenvalue with its
   residual) with the trace deflated by the Lanczos basis, stopped at SE/|trace| <=
   trace_rel_se (trace: hutchinson), and with the exact trace (trace: auto, the default:
   ggn.py), all with the schema defaults (HessianConfig()) through cell._estimate, the
   function production runs.
   One trained model per arch and width (the default study's mlp at widths 1 2 16, the small
   cnn at 1 4 16), the production sample of 500 points (study seed 0, repeat 0),
   and --seeds probe generators on that same sample. The reference is the exact trace and
   top eigenvalue of the dense Hessian (autograd products, a code path independent of
   second_order.py) up to DENSE_MAX parameters; above, the Gauss-Newton trace in float64
   (ggn.py, checked against dense Hessians in tests/test_ggn.py) and the top eigenvalue of
   an 80-step Lanczos run, labelled so.
2. Engines, HVP(engine="autograd") (double backward) against engine="auto" (hand-derived
   rules, second_order.py) on paper-size ResNet18: time per H v (power iteration, Lanczos)
   and per vᵀHv probe (Hutchinson), and their agreement. Runs on CUDA when present; on a
   CPU-only machine only with --resnet-device cpu, at a tiny width and 32 samples.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time

import torch
from common import digits_train, machine, trained_model

from landscape_taxonomy.config.schema import HessianConfig
from landscape_taxonomy.metrics.cell import _estimate, hessian_sample
from landscape_taxonomy.metrics.curvature import estimators, ggn, hessian
from landscape_taxonomy.training.models import build_model

DENSE_MAX = 4000  # parameters: the dense Hessian costs this many products, float64
WIDTHS = {"mlp": [1, 2, 16], "cnn": [1, 4, 16]}  # exact, exact, long Lanczos


def production_sample(x, y, n, seed=0):
    """The indices hessian_of_models draws for study seed `seed`, repeat 0."""
    idx, _ = hessian_sample(len(y), n, seed, 0)
    return torch.arange(len(y)) if idx is None else idx


METHODS = ("pyhessian", "hutchinson", "exact")  # the first is the old way


def run_estimator(model, xs, ys, cfg, method, probe_seed):
    """One model's row as production computes it (HVP and the exact trace built inside:
    production pays them too), but with the probe generator seeded apart from the sample.
    method: pyhessian, hutchinson (lanczos, trace: hutchinson) or exact (lanczos, trace:
    auto)."""
    hvp = hessian.HVP(model, xs, ys, chunk=cfg.chunk)
    per_pass = 8 if xs.is_cuda else 4 if hvp.second_order is not None else 1
    g = torch.Generator().manual_seed(1000 + probe_seed)
    exact = [ggn.hessian_trace(model, xs, cfg.chunk)] if method == "exact" else None
    return _estimate(hvp, "pyhessian" if method == "pyhessian" else "lanczos", g, per_pass,
                     max_iter=cfg.max_iter, tol=cfg.tol, top_k=cfg.top_k,
                     lanczos_steps=cfg.lanczos_steps, trace_rel_se=cfg.trace_rel_se,
                     trace_min_probes=cfg.trace_min_probes, max_probes=cfg.max_probes,
                     exact_traces=exact)[0]


def dense_hessian(model, xs, ys, cols=64, dtype=torch.float32) -> torch.Tensor:
    """H from H e_i, `cols` columns per batched double backward, returned in float64.
    float32 products by default: CPU convolutions in float64 are ~8x slower (5 minutes at
    1702 parameters), and float32 rounding (~1e-6 relative) is far below the errors here."""
    m = model.to(dtype)
    hvp = hessian.HVP(m, xs.to(dtype), ys, chunk=len(ys), engine="autograd")
    sizes = [p.numel() for p in hvp.params]
    n = sum(sizes)
    out = []
    for i in range(0, n, cols):
        e = torch.eye(n, dtype=dtype)[i:i + cols]
        v = [c.reshape(len(e), *p.shape) for c, p in zip(e.split(sizes, 1), hvp.params)]
        out.append(torch.cat([h.reshape(len(e), -1) for h in hvp(v, batched=True)], 1))
    model.float()
    h = torch.cat(out).double()
    return (h + h.T) / 2  # symmetric up to rounding


def reference(model, xs, ys):
    n = sum(p.numel() for p in model.parameters())
    if n <= DENSE_MAX:
        h = dense_hessian(model, xs, ys)
        return {"ref": "exact (dense)", "trace": float(h.trace()),
                "top": float(torch.linalg.eigvalsh(h)[-1]), "trace_se": 0.0}
    # The trace exactly (Gauss-Newton, float64), the top eigenvalue from 80 Lanczos steps.
    trace = ggn.hessian_trace(copy.deepcopy(model).double(), xs.double())
    hvp = hessian.HVP(model, xs, ys)
    c = estimators.curvature(hvp, max_iter=100, tol=1e-6, min_steps=80,
                             generator=torch.Generator().manual_seed(999),
                             exact_traces=[trace])[0]
    return {"ref": "exact trace (Gauss-Newton, float64), top: lanczos-80", "trace": trace,
            "top": c.top, "trace_se": 0.0, "top_residual": c.top_residual}


def bench_estimators(x, y, archs, widths, seeds, epochs, samples):
    cfg = HessianConfig()
    idx = production_sample(x, y, samples)
    xs, ys = x[idx], y[idx]
    rows = []
    print(f"\n## 1. Estimators, CPU: {len(ys)} samples, {seeds} probe seeds, schema defaults"
          f" (max_iter {cfg.max_iter}, tol {cfg.tol}, lanczos_steps {cfg.lanczos_steps}, "
          f"trace_rel_se {cfg.trace_rel_se})\n")
    print("| model width (params) | reference | method | time/model | probes | H v products "
          "| trace mean | trace \\|err\\| mean / max | SE (rel) | \\|err\\| <= 2 SE "
          "| top rel err max | top residual |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arch, w in [(a, w) for a in archs for w in (widths or WIDTHS[a])]:
        model = trained_model(w, 0, x, y, epochs=epochs, batch_size=64, arch=arch)
        n = sum(p.numel() for p in model.parameters())
        ref = reference(model, xs, ys)
        # The methods alternate seed by seed, so drift in the machine hits them alike.
        res = {m: [] for m in METHODS}
        times = {m: [] for m in METHODS}
        for s in range(seeds):
            for method in METHODS:
                t0 = time.perf_counter()
                res[method].append(run_estimator(model, xs, ys, cfg, method, s))
                times[method].append(time.perf_counter() - t0)
        med = {}
        for method in METHODS:
            rs = res[method]
            errs = [(r["trace"] - ref["trace"]) / abs(ref["trace"]) for r in rs]
            # the reference's own SE (long Lanczos) widens the bar; zero when exact
            bars = [2 * math.hypot(r["trace_se"], ref["trace_se"]) / abs(ref["trace"])
                    for r in rs]
            tops = [abs(r["top"] - ref["top"]) / abs(ref["top"]) for r in rs]
            med[method] = statistics.median(times[method])
            hv = [r.get("hvps", r["top_iters"]) for r in rs]  # pyhessian: power iterations
            row = {"arch": arch, "width": w, "params": n, "reference": ref["ref"],
                   "ref_trace": ref["trace"], "ref_trace_se": ref["trace_se"],
                   "ref_top": ref["top"], "method": method,
                   "time_s": med[method], "times_s": times[method],
                   "probes": [r["trace_probes"] for r in rs], "hvps": hv,
                   "trace_mean": statistics.fmean(r["trace"] for r in rs),
                   "trace_rel_err": errs, "trace_rel_se": [r["trace_se"] / abs(ref["trace"])
                                                           for r in rs],
                   "within_2se": sum(abs(e) <= b for e, b in zip(errs, bars)),
                   "top_rel_err": tops, "top_residual": [r["top_residual"] for r in rs]}
            rows.append(row)
            fin = [r for r in row["top_residual"] if math.isfinite(r)]
            resid = f"{max(fin):.3g}" if fin else "-"  # power iteration reports none
            err = (f"{statistics.fmean(map(abs, errs)):.2%} / {max(map(abs, errs)):.2%}"
                   if method != "exact" else f"{max(map(abs, errs)):.1e} (float32)")
            within = f"{row['within_2se']}/{seeds}" if method != "exact" else "- (SE 0)"
            print(f"| {arch} {w} ({n}) | {ref['ref']}: tr {ref['trace']:.4g}, "
                  f"top {ref['top']:.4g} "
                  f"| {method} | {med[method]:.2f} s | {statistics.median(row['probes']):g} "
                  f"| {statistics.median(hv):g} | {row['trace_mean']:.4g} | {err} "
                  f"| {statistics.median(row['trace_rel_se']):.2%} "
                  f"| {within} | {max(tops):.2%} | {resid} |", flush=True)
        old = med["pyhessian"]
        print(f"| {arch} {w} ({n}) | | time / pyhessian's | hutchinson "
              f"{med['hutchinson'] / old:.2f}x, exact {med['exact'] / old:.2f}x "
              "| | | | | | | | |", flush=True)
    return rows


def _time(fn, reps, cuda):
    fn()  # warm-up: cudnn autotuning, allocator, lazily built kernels
    ts = []
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_engines(widths, device, n, reps=5):
    cuda = device.type == "cuda"
    batch = 8 if cuda else 4  # production's probes per pass (cell.hessian_of_models)
    rows = []
    print(f"\n## 2. Engines on ResNet18, {device}: {n} random 3x32x32 inputs, "
          f"vᵀHv {batch} probes a pass, median of {reps}\n")
    print("| width k (params) | engine | setup | H v | vᵀHv per probe | Hv rel diff "
          "| vᵀHv rel diff | faster H v | faster vᵀHv |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in widths:
        torch.manual_seed(w)
        model = build_model("resnet18", w, (3, 32, 32), 10, seed=0).to(device)
        # a few train-mode passes so the BatchNorm running stats are not 0 and 1
        with torch.no_grad():
            model.train()
            for _ in range(3):
                model(torch.randn(64, 3, 32, 32, device=device))
        model.eval()
        x = torch.randn(n, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (n,), device=device)
        g = torch.Generator().manual_seed(0)
        params = list(model.parameters())
        n_params = sum(p.numel() for p in params)
        v = [torch.randn(p.shape, generator=g).to(device) for p in params]
        probes = [[(torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p) for p in params]
                  for _ in range(batch)]
        out = {}
        for engine in ("autograd", "auto"):
            t0 = time.perf_counter()
            hvp = hessian.HVP(model, x, y, chunk=1000, engine=engine)
            if cuda:
                torch.cuda.synchronize()
            setup = time.perf_counter() - t0
            hv, q = hvp(v), hvp.quad(probes)
            out[engine] = {"width": w, "device": str(device), "params": n_params,
                           "engine": engine, "hand_derived": hvp.second_order is not None,
                           "setup_s": setup, "hvp_s": _time(lambda: hvp(v), reps, cuda),
                           "quad_per_probe_s": _time(lambda: hvp.quad(probes), reps, cuda)
                           / batch, "_hv": hv, "_q": q}
            hvp = None  # free its graph / kept activations before the next engine's
        a, b = out["autograd"], out["auto"]
        ha, hb = a.pop("_hv"), b.pop("_hv")
        hv_diff = math.sqrt(sum(float((p - r).pow(2).sum()) for p, r in zip(ha, hb))
                            / sum(float(p.pow(2).sum()) for p in ha))
        qa, qb = [r[0] for r in a.pop("_q")], [r[0] for r in b.pop("_q")]
        q_diff = max(abs(p - r) for p, r in zip(qa, qb)) / max(map(abs, qa))
        if not b["hand_derived"]:
            print(f"| {w} | auto fell back to autograd (second_order does not cover it) |")
        for r in (a, b):
            r.update(hv_rel_diff=hv_diff, quad_rel_diff=q_diff,
                     faster_hvp=min((a, b), key=lambda z: z["hvp_s"])["engine"],
                     faster_quad=min((a, b), key=lambda z: z["quad_per_probe_s"])["engine"])
            rows.append(r)
            label = "auto (hand-derived)" if r["hand_derived"] else r["engine"]
            print(f"| {w} ({r['params']}) | {label} | {r['setup_s'] * 1e3:.0f} ms "
                  f"| {r['hvp_s'] * 1e3:.1f} ms | {r['quad_per_probe_s'] * 1e3:.1f} ms "
                  f"| {hv_diff:.1e} | {q_diff:.1e} | {r['faster_hvp']} "
                  f"| {r['faster_quad']} |", flush=True)
        del model, x, out
        if cuda:
            torch.cuda.empty_cache()
    return rows


def recommendation(rows, device) -> str:
    """The engine to set on this device: the one with less time per model, counting the
    products the default estimator spends (20 H v for Lanczos, about 50 vᵀHv probes)."""
    cost = {}
    for r in rows:
        cost[r["engine"]] = cost.get(r["engine"], 0.0) + 20 * r["hvp_s"] + 50 * r[
            "quad_per_probe_s"]
    best = min(cost, key=cost.get)
    times = ", ".join(f"{e} {c:.2f} s" for e, c in sorted(cost.items()))
    return (f"on {device.type}: 20 H v + 50 vᵀHv summed over the widths: {times}; the faster: "
            f"metrics.hessian.engine: {best}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    ap.add_argument("--widths", type=int, nargs="+",
                    help="the same widths for every arch (default: mlp 1 2 16, cnn 1 4 16)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--resnet-widths", type=int, nargs="+")
    ap.add_argument("--resnet-device", choices=["cuda", "cpu"],
                    default="cuda" if torch.cuda.is_available() else None)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--quick", action="store_true", help="widths 1 2, 3 seeds")
    args = ap.parse_args()
    if args.quick:
        args.widths, args.seeds = [1, 2], 3
    print(machine())
    x, y = digits_train()
    results = {"machine": machine(), "estimators": bench_estimators(
        x, y, args.archs, args.widths, args.seeds, args.epochs, HessianConfig().samples),
        "engines": []}
    if args.resnet_device is None:
        print("\n## 2. Engines on ResNet18: skipped (no CUDA; --resnet-device cpu runs it)")
    else:
        dev = torch.device(args.resnet_device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--resnet-device cuda: CUDA is not available")
        widths = args.resnet_widths or ([8, 16, 32] if dev.type == "cuda" else [2])
        results["engines"] = bench_engines(widths, dev, 200 if dev.type == "cuda" else 32)
        print("\n" + recommendation(results["engines"], dev))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
