"""A notebook's way in: load one cell's trained models and data, measure any metric.

    from landscape_taxonomy import api
    cell = api.load_cell("models/width=8__batch_size=64", "data/prepared")
    api.hessian(cell.models[0], cell.x_train, cell.y_train, seed=cell.seed, samples="all")
    api.mode_connectivity(cell, 0, 1, epochs=20)
    api.cka(cell, 0, 1), api.l2(cell, 0, 1), api.evaluate(cell.models[0], cell.x_test, cell.y_test)

Every function is the code the pipeline runs, with the pipeline's seeds. A setting left out
comes from `params` (a params.yaml path or a `config.Params`) when given, else from the
schema's defaults (config.py); either way it is validated like params.yaml. With the params
of a run, each function gives that run's numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .cells import grid
from .config.loading import load_params, updated
from .config.schema import Params
from .metrics import curves
from .metrics.cell import (
    curve_seed,
    error_with_fresh_bn,
    evaluate,
    hessian_of,
    hessian_sample,
    mixup_seed,
    model_pairs,
)
from .metrics.curvature import hessian as hessian_products
from .metrics.curvature.density import spectral_density as slq
from .metrics.similarity import l2_distance, linear_cka, mixup_points
from .pipeline.metrics import check_models
from .training.data import Prepared
from .training.loop import resolve_device
from .training.models import build_model

__all__ = ["Cell", "load_cell", "evaluate", "hessian", "spectral_density", "mode_connectivity",
           "cka", "l2"]


@dataclass
class Cell:
    cell_id: str
    info: dict  # the cell's config, seeds, epochs, divergence (models/<cell>/info.json)
    seed: int  # the study's `seed`, from which the metrics' seeds derive
    models: list  # nn.Module per seed, eval mode, on `device`
    states: list  # state_dict per seed (CPU)
    x_train: torch.Tensor  # [n, C, H, W] the training set the cell used (noisy labels)
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    device: torch.device

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The model pairs the pipeline measures, in its order (diverged models left out)."""
        return model_pairs(self.info["diverged"])


def _params(params) -> Params:
    if params is None:
        return Params()
    return params if isinstance(params, Params) else load_params(params)


def _settings(section, prefix: str, given: dict) -> dict:
    """A params section with the arguments given (not None) put in, validated as params."""
    return updated(section, prefix, **{k: v for k, v in given.items() if v is not None}
                   ).model_dump()


def load_cell(cell_dir: str | Path, prepared_dir: str | Path = "data/prepared",
              device: str | None = None, params=None) -> Cell:
    """A cell folder of the train-grid output (models/<cell_id>) and the prepared data it
    trained on; `device` defaults to params' train.device. The folder must match the
    checksums train-grid wrote into it (as compute-metrics checks), or DataError says what
    differs."""
    cell_dir = Path(cell_dir)
    check_models(cell_dir)
    info = json.loads((cell_dir / "info.json").read_text())
    prep = Prepared(prepared_dir)
    dev = resolve_device(device or _params(params).train.device)
    cfg = info["cell"]
    seed = prep.manifest["seed"]  # prepare-noisy-data's: the study seed
    if list(grid.model_seeds(seed, len(cfg["seeds"]))) != list(cfg["seeds"]):
        raise ValueError(f"{cell_dir}: its model seeds {cfg['seeds']} are not those of the "
                          f"prepared data's seed {seed}; give the prepared folder of its run")
    states, models = [], []
    for i in range(len(cfg["seeds"])):
        state = torch.load(cell_dir / f"seed_{i}.pt", weights_only=True)
        m = build_model(cfg["arch"], cfg["width"], prep.manifest["input_shape"], prep.n_classes,
                        seed=0).to(dev)
        m.load_state_dict(state)
        states.append(state)
        models.append(m.eval())
    x, y = prep.train_set(cfg["noise"], cfg["subset"])
    return Cell(cell_dir.name, info, seed, models, states, x.to(dev), y.to(dev),
                prep.x_test.to(dev), prep.y_test.to(dev), dev)


def hessian(model, x, y, *, seed: int | None = None, params=None, samples=None, max_iter=None,
            tol=None, repeats=None, chunk=None, **estimator) -> dict:
    """Top eigenvalue and trace (means over repeats, their spread, the trace's SE, and every
    run's details). `seed` is the study seed (a cell's `seed`; default params' seed);
    `estimator` takes the other metrics.hessian keys (method, top_k, trace_rel_se, ...)."""
    p = _params(params)
    h = _settings(p.metrics.hessian, "metrics.hessian",
                  {"samples": samples, "max_iter": max_iter, "tol": tol, "repeats": repeats,
                   "chunk": chunk, **estimator})
    return hessian_of(model.eval(), x, y, seed=p.seed if seed is None else seed, **h)


def spectral_density(model, x, y, *, steps: int = 50, probes: int = 1, points: int = 200,
                     sigma: float | None = None, seed: int | None = None, params=None,
                     samples=None) -> dict:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature (PyHessian's
    `density()`): `probes` runs of `steps` Lanczos steps on the sample the pipeline's first
    Hessian repeat uses (metrics.hessian.samples points, drawn from `seed`). Returns the
    quadrature nodes and weights, and the density smoothed on a grid (`sigma`: the
    Gaussian's width, default 1% of the nodes' range); report/charts.py:density_chart draws it."""
    p = _params(params)
    h = _settings(p.metrics.hessian, "metrics.hessian", {"samples": samples})
    idx, g = hessian_sample(len(y), h["samples"], p.seed if seed is None else seed, 0)
    if idx is not None:
        x, y = x[idx.to(x.device)], y[idx.to(x.device)]
    hvp = hessian_products.HVP(model.eval(), x, y, chunk=h["chunk"], engine=h["engine"])
    d = slq(hvp, steps=steps, probes=probes, generator=g)
    grid, density = d.smooth(points, sigma)
    return {"nodes": d.nodes, "weights": d.weights, "grid": grid.tolist(),
            "density": density.tolist(), "samples": len(y)}


def _pair_index(cell: Cell, i: int, j: int) -> int:
    if (i, j) not in cell.pairs:
        raise ValueError(f"models ({i}, {j}): the pipeline measures the pairs {cell.pairs} "
                         "(i < j, diverged models left out)")
    return cell.pairs.index((i, j))


def mode_connectivity(cell: Cell, i: int = 0, j: int = 1, *, params=None, epochs=None, lr=None,
                      momentum=None, batch_size=None, weight_decay=None, points=None,
                      endpoint_tol=None) -> dict:
    """mc, t*, the linear-path barrier, and the error/loss profile of both paths, seeded as
    the pipeline seeds this pair's curve."""
    c = _settings(_params(params).metrics.curve, "metrics.curve",
                  {"epochs": epochs, "lr": lr, "momentum": momentum, "batch_size": batch_size,
                   "weight_decay": weight_decay, "points": points, "endpoint_tol": endpoint_tol})
    seed = curve_seed(cell.seed, _pair_index(cell, i, j))
    x, y = cell.x_train, cell.y_train
    ends = (error_with_fresh_bn(cell.models[i], x, y), error_with_fresh_bn(cell.models[j], x, y))
    return curves.connect(cell.models[i], cell.states[i], cell.states[j], x, y,
                          epochs=c["epochs"], lr=c["lr"], momentum=c["momentum"],
                          batch_size=c["batch_size"], weight_decay=c["weight_decay"],
                          points=c["points"], seed=seed,
                          endpoint_errors=ends, endpoint_tol=c["endpoint_tol"])


@torch.no_grad()
def cka(cell: Cell, i: int = 0, j: int = 1, *, params=None, samples=None, mixup_alpha=None,
        debiased=None) -> float:
    """Linear CKA of two models' softmax outputs on the cell's mixup points (the pipeline's)."""
    c = _settings(_params(params).metrics.cka, "metrics.cka",
                  {"samples": samples, "mixup_alpha": mixup_alpha, "debiased": debiased})
    pts = mixup_points(cell.x_train, c["samples"], c["mixup_alpha"], mixup_seed(cell.seed))
    a = torch.softmax(cell.models[i].eval()(pts), 1).cpu()
    b = torch.softmax(cell.models[j].eval()(pts), 1).cpu()
    return linear_cka(a, b, c["debiased"])


def l2(cell: Cell, i: int = 0, j: int = 1) -> float:
    names = [n for n, _ in cell.models[0].named_parameters()]
    return l2_distance(cell.states[i], cell.states[j], names)
