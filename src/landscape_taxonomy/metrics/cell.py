"""Every metric of one grid cell, from its trained models and its data.

Per model: train/test loss and accuracy, Hessian top eigenvalue and trace (with the trace's
standard error, the eigenpair's residual, and the seed and digest of the Hessian sample's
indices, per repeat in `hessian_runs`). Per pair of
models: CKA, L2 distance, and (for the first `pairs` pairs) mode connectivity. The cell's
value of each metric is the mean over models or pairs, and `<name>_std` its spread.
Diverged models are left out; a cell with every model diverged gets NaN everywhere.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import math
import platform
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from ..training.models import build_model, fast_layout
from ..training.stacked import split_outputs, stack_inputs, stack_models, stackable
from . import curves, similarity
from .curvature import estimators, ggn, hessian
from .curvature.fold import fold_batchnorm


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 1000, hits=None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode. `hits` ([len(y)] integers), when given,
    gains 1 where the model is right: the per-sample record the phases' paired accuracy
    comparison needs (phases.accuracy_se)."""
    model.eval()
    folded = fold_batchnorm(model)  # the same function, cheaper
    fmt = fast_layout(model, x.device)
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        out = folded(x[i:i + batch_size].contiguous(memory_format=fmt))
        loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        right = out.argmax(1) == y[i:i + batch_size]
        correct += right.sum().item()
        if hits is not None:
            hits[i:i + batch_size] += right.to(hits.device, hits.dtype)
    return loss / len(y), correct / len(y)


@torch.no_grad()
def error_with_fresh_bn(model, x, y, batch_size: int = 1000) -> float:
    """Training error (%) of a copy of `model` whose BatchNorm statistics are recomputed on
    x through the module itself (size-weighted average of batch statistics), a code path
    independent of the curve's functional one; the curve at t=0 and t=1 must agree with it."""
    m = copy.deepcopy(model)
    bns = [b for b in m.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for b in bns:
            b.reset_running_stats()
        m.train()
        seen = 0
        fmt = fast_layout(m, x.device)
        for i in range(0, len(y), batch_size):
            xb = x[i:i + batch_size].contiguous(memory_format=fmt)
            if len(xb) > 1:
                for b in bns:
                    b.momentum = len(xb) / (seen + len(xb))
                m(xb)
                seen += len(xb)
    return 100.0 * (1.0 - evaluate(m, x, y, batch_size)[1])


def derive_seed(*parts) -> int:
    """A 31-bit seed from any parts (stable across runs and machines)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


# The seeds a cell's measurements use, from the study seed (params `seed`); api.py uses the
# same, so a notebook reproduces the pipeline's numbers.
def hessian_seed(seed: int, repeat: int) -> int:
    """Sample and random vectors of one Hessian repeat (the same for every model)."""
    return derive_seed(seed, "hessian", repeat)


def mixup_seed(seed: int) -> int:
    """The CKA's mixup points: one evaluation set per cell."""
    return derive_seed(seed, "mixup")


def curve_seed(seed: int, pair_index: int) -> int:
    """The bend's training order of the curve between the pair `model_pairs(...)[pair_index]`."""
    return derive_seed(seed, "curve", pair_index)


def model_pairs(diverged: list[bool]) -> list[tuple[int, int]]:
    """The pairs of models CKA and L2 average over, in order; mode connectivity takes the
    first `metrics.curve.pairs`. Diverged models are left out."""
    return list(itertools.combinations([i for i, d in enumerate(diverged) if not d], 2))


def mean_std(values) -> tuple[float, float]:
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return math.nan, math.nan
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def stacked_loss(blocks: int):
    """Sum over the S stacked models of each one's mean cross-entropy on the same batch."""
    def loss(net, x, y):
        xs = x.unsqueeze(0).expand(blocks, *x.shape)  # every model sees the same points
        out = split_outputs(net(stack_inputs(xs)), blocks)  # [S, b, K]
        return F.cross_entropy(out.transpose(1, 2), y.expand(blocks, -1),
                               reduction="none").mean(1).sum()
    return loss


def hessian_sample(n: int, samples, seed: int, repeat: int):
    """(indices into the n training points, or None for all of them; the generator that drew
    them, which goes on to draw the repeat's random vectors) of Hessian repeat `repeat`."""
    g = torch.Generator().manual_seed(hessian_seed(seed, repeat))
    if samples == "all" or samples >= n:
        return None, g
    return torch.randperm(n, generator=g)[:samples], g


def sample_digest(idx: torch.Tensor) -> str:
    """A short digest of the Hessian sample's indices into the training set (recorded with
    the seed that draws them, so a run's sample can be checked and reproduced)."""
    return hashlib.sha256(idx.cpu().to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def hessian_of_models(models: list, x, y, *, samples, max_iter, tol, repeats, chunk, seed,
                      method: str = "lanczos", top_k: int = 1, lanczos_steps: int = 20,
                      trace_rel_se: float = 0.01, trace_min_probes: int = 16,
                      max_probes: int = 1000, stack: bool = False,
                      engine: str = "auto", trace: str = "auto") -> list[dict]:
    """Top eigenvalue(s) and trace of each model, `repeats` times on independent samples.

    Every model gets the same sample and random vectors. With stack=True the models go
    through one stacked network (one double backward for all); the estimates are the same.
    method: "lanczos" (estimators.py: residuals, trace with its SE) or "pyhessian".
    engine: "auto" (hand-derived products where they cover the model) or "autograd".
    trace (lanczos): "auto", the exact trace where it equals the Gauss-Newton trace (ggn.py:
    the project's models in eval mode), else the deflated Hutchinson; "hutchinson" always.
    """
    for m in models:
        m.eval()
    groups = [models] if stack and len(models) > 1 else [[m] for m in models]
    runs = [[] for _ in models]
    for r in range(repeats):
        k = 0
        for group in groups:
            sample_seed = hessian_seed(seed, r)
            idx, g = hessian_sample(len(y), samples, seed, r)
            if idx is None:
                idx = torch.arange(len(y))
                xs, ys = x, y
            else:
                xs, ys = x[idx.to(x.device)], y[idx.to(x.device)]
            if len(group) > 1:
                net = stack_models(group).eval()
                hvp = hessian.HVP(net, xs, ys, chunk=chunk, loss=stacked_loss(len(group)),
                                  blocks=len(group))
            else:
                hvp = hessian.HVP(group[0], xs, ys, chunk=chunk, engine=engine)
            # Probes per pass: the forward-mode vᵀHv is 1.3-2x cheaper per probe at 4 than at 1
            # on CPU (benchmarks/bench_speed.py), where a batched double backward is no faster.
            per_pass = 8 if xs.is_cuda else 4 if hvp.second_order is not None else 1
            base = {"repeat": r, "samples": len(ys), "sample_seed": sample_seed,
                    "sample_digest": sample_digest(idx), "method": method,
                    "engine": "stacked autograd" if len(group) > 1 else
                    "hand-derived" if hvp.second_order is not None else "autograd"}
            exact = None
            if method == "lanczos" and trace == "auto" and not any(map(ggn.why_not_exact,
                                                                       group)):
                exact = [ggn.hessian_trace(m, xs, chunk) for m in group]
            for row in _estimate(hvp, method, g, per_pass, max_iter=max_iter, tol=tol,
                                 top_k=top_k, lanczos_steps=lanczos_steps,
                                 trace_rel_se=trace_rel_se, trace_min_probes=trace_min_probes,
                                 max_probes=max_probes, exact_traces=exact):
                runs[k].append({**base, **row})
                k += 1
    return [_per_model(rows) for rows in runs]


def _estimate(hvp, method, g, per_pass, *, max_iter, tol, top_k, lanczos_steps, trace_rel_se,
              trace_min_probes, max_probes, exact_traces=None) -> list[dict]:
    """One run's rows, one per block of `hvp` (exact_traces: lanczos only)."""
    if method == "pyhessian":
        tops = hessian.top_eigenvalues(hvp, max_iter, tol, generator=g)
        trs = hessian.traces(hvp, max_iter, tol, generator=g, probes_per_pass=per_pass)
        return [{"top": top.value, "top_iters": top.iterations, "top_converged": top.converged,
                 "top_residual": math.nan, "trace": tr.value, "trace_se": tr.se,
                 "trace_probes": tr.iterations, "trace_converged": tr.converged,
                 "trace_method": "hutchinson"}
                for top, tr in zip(tops, trs)]
    cs = estimators.curvature(hvp, top_k=top_k, max_iter=max_iter, tol=tol,
                              min_steps=lanczos_steps, rel_se=trace_rel_se,
                              min_probes=trace_min_probes, max_probes=max_probes,
                              probes_per_pass=per_pass, generator=g, exact_traces=exact_traces)
    return [{"top": c.top, "top_iters": c.steps, "top_converged": c.eig_converged,
             "top_residual": c.top_residual, "top_k": c.eigenvalues,
             "top_k_residuals": c.residuals, "trace": c.trace, "trace_se": c.trace_se,
             "trace_probes": c.trace_probes, "trace_converged": c.trace_converged,
             "trace_method": c.trace_method, "trace_deflated": c.deflated, "hvps": c.hvps,
             "slq_nodes": c.nodes, "slq_weights": c.weights} for c in cs]


def _per_model(rows: list[dict]) -> dict:
    """Means over repeats; the trace's SE is that of the mean of independent repeats, the
    residual the largest (the least converged eigenpair)."""
    top_m, top_s = mean_std(row["top"] for row in rows)
    tr_m, tr_s = mean_std(row["trace"] for row in rows)
    return {"top": top_m, "top_repeat_std": top_s, "trace": tr_m, "trace_repeat_std": tr_s,
            "trace_se": _se_of_mean(row["trace_se"] for row in rows),
            "top_residual": _worst(row["top_residual"] for row in rows), "runs": rows}


def _se_of_mean(ses) -> float:
    """SE of the mean of independent estimates with standard errors `ses`."""
    v = [float(s) for s in ses]
    if not v or not all(math.isfinite(s) for s in v):
        return math.nan
    return math.sqrt(sum(s * s for s in v)) / len(v)


def _worst(values) -> float:
    v = [float(x) for x in values]
    return max(v) if v and all(math.isfinite(x) for x in v) else math.nan


def hessian_of(model, x, y, *, samples, max_iter, tol, repeats, chunk, seed,
               **estimator) -> dict:
    """One model's top eigenvalue and trace (see hessian_of_models)."""
    return hessian_of_models([model], x, y, samples=samples, max_iter=max_iter, tol=tol,
                             repeats=repeats, chunk=chunk, seed=seed, **estimator)[0]


def cell_metrics(*, arch: str, width: int, input_shape, n_classes: int, states: list,
                 diverged: list[bool], x_train, y_train, x_test, y_test, hessian_cfg: dict,
                 curve_cfg: dict, cka_cfg: dict, seed: int, device: torch.device,
                 vectorize="auto") -> dict:
    """All metrics of a cell. `states[i]` is model i's state_dict (CPU tensors)."""
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    models = []
    for s in states:
        m = build_model(arch, width, input_shape, n_classes, seed=0).to(device)
        m.load_state_dict(s)
        m.eval()
        models.append(m)
    live = [i for i, d in enumerate(diverged) if not d]

    per_model = []
    hits = torch.zeros(len(y_test), dtype=torch.uint8)  # live models right on each test sample
    for i, m in enumerate(models):
        row = {"model": i, "diverged": diverged[i]}
        if not diverged[i]:
            row["train_loss"], row["train_acc"] = evaluate(m, x_train, y_train)
            row["test_loss"], row["test_acc"] = evaluate(m, x_test, y_test, hits=hits)
        per_model.append(row)
    live_models = [models[i] for i in live]
    # Model by model, through second_order.py, which has no stacked form; a stacked double
    # backward (vectorize: true) gives the same estimates and was slower on CPU.
    stack = len(live_models) > 1 and vectorize is True and stackable(live_models[0])
    for i, h in zip(live, hessian_of_models(live_models, x_train, y_train, seed=seed,
                                            stack=stack, **hessian_cfg)):
        per_model[i].update(hessian_top=h["top"], hessian_trace=h["trace"],
                            hessian_top_repeat_std=h["top_repeat_std"],
                            hessian_trace_repeat_std=h["trace_repeat_std"],
                            hessian_trace_se=h["trace_se"],
                            hessian_top_residual=h["top_residual"],
                            hessian_runs=h["runs"])

    # n_train: mc's resolution, one example (thresholds.auto_mc); n_test: the accuracy's
    # binomial error (phases.accuracy_se)
    out = {"n_models": len(models), "n_diverged": len(models) - len(live),
           "n_train": len(y_train), "n_test": len(y_test)}
    for name in ("train_loss", "train_acc", "test_loss", "test_acc", "hessian_top",
                 "hessian_trace"):
        out[name], out[f"{name}_std"] = mean_std(r.get(name) for r in per_model)
    # The probe error of the cell's mean trace (its _std is the spread over seeds), and the
    # worst eigen residual of the cell's models.
    out["hessian_trace_se"] = _se_of_mean(per_model[i]["hessian_trace_se"] for i in live)
    out["hessian_top_residual"] = _worst(per_model[i]["hessian_top_residual"] for i in live)

    pairs = model_pairs(diverged)
    pnames = [n for n, _ in models[0].named_parameters()] if models else []
    mix_seed = mixup_seed(seed)  # recorded
    mix = similarity.mixup_points(x_train, cka_cfg["samples"], cka_cfg["mixup_alpha"],
                                  mix_seed) if pairs else None
    with torch.no_grad():
        probs = {i: torch.softmax(models[i](mix), 1).cpu() for i in live} if pairs else {}
    ckas = [similarity.linear_cka(probs[i], probs[j], cka_cfg["debiased"]) for i, j in pairs]
    l2s = [similarity.l2_distance(states[i], states[j], pnames) for i, j in pairs]
    out["cka"], out["cka_std"] = mean_std(ckas)
    out["l2"], out["l2_std"] = mean_std(l2s)

    curve_rows, mcs, lins = [], [], []
    fit = {k: curve_cfg[k] for k in ("epochs", "lr", "momentum", "batch_size", "weight_decay",
                                     "points")}
    for p, (i, j) in enumerate(pairs[:curve_cfg["pairs"]]):
        ends = (error_with_fresh_bn(models[i], x_train, y_train),
                error_with_fresh_bn(models[j], x_train, y_train))
        res = curves.connect(models[i], states[i], states[j], x_train, y_train, **fit,
                             seed=curve_seed(seed, p), endpoint_errors=ends,
                             endpoint_tol=curve_cfg["endpoint_tol"])
        mcs.append(res["mc"])
        lins.append(res["mc_linear"])
        for path in ("curve", "line"):
            for r in res[path]:
                curve_rows.append({"pair": f"{i}-{j}", "path": path, **r})
    out["mc"], out["mc_std"] = mean_std(mcs)
    out["mc_linear"], out["mc_linear_std"] = mean_std(lins)
    out["n_pairs"], out["n_curve_pairs"] = len(pairs), len(mcs)
    out["mixup_seed"] = mix_seed
    return {"metrics": out, "per_model": per_model, "curves": curve_rows,
            "test_hits": encode_hits(hits.numpy()),
            "pairs": [{"pair": f"{i}-{j}", "cka": c, "l2": d}
                      for (i, j), c, d in zip(pairs, ckas, l2s)],
            "paths": computed_by(per_model, stack),
            "provenance": provenance(device)}


def computed_by(per_model: list[dict], stacked: bool) -> dict:
    """Which code computed the cell's curvature: Hessian products (hand-derived where they
    cover the model, else autograd; stacked models through one double backward) and the
    trace (exact, or Hutchinson's estimate), each the sorted set over its models' runs."""
    runs = [run for row in per_model for run in row.get("hessian_runs", [])]
    return {"hessian_products": sorted({run["engine"] for run in runs}),
            "trace": sorted({run.get("trace_method", "hutchinson") for run in runs}),
            "stacked_models": stacked}


def encode_hits(hits: np.ndarray) -> str:
    """[n_test] counts of models right (< 256) as base64 of their bytes, for a JSON cell."""
    return base64.b64encode(np.asarray(hits, dtype=np.uint8).tobytes()).decode()


def provenance(device: torch.device) -> dict:
    import dvc

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"torch": torch.__version__, "dvc": dvc.__version__,
            "python": platform.python_version(), "device": str(device),
            "device_name": name or platform.machine()}
