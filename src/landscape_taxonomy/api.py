"""A notebook's way in: load one cell's trained models and data, measure any metric.

    from landscape_taxonomy import api
    cell = api.load_cell("models/width=8__batch_size=64", "data/prepared")
    api.hessian(cell.models[0], cell.x_train, cell.y_train, samples=1000)
    api.mode_connectivity(cell, 0, 1, epochs=20)
    api.cka(cell, 0, 1), api.l2(cell, 0, 1), api.evaluate(cell.models[0], cell.x_test, cell.y_test)

Every function is the code the pipeline runs; defaults are the params.yaml defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import Prepared
from .metrics import curves
from .metrics.cell import error_with_fresh_bn, evaluate, hessian_of
from .metrics.similarity import l2_distance, linear_cka, mixup_points
from .models import build_model
from .train import resolve_device

__all__ = ["Cell", "load_cell", "evaluate", "hessian", "mode_connectivity", "cka", "l2"]


@dataclass
class Cell:
    cell_id: str
    info: dict  # the cell's config, seeds, epochs, divergence (models/<cell>/info.json)
    models: list  # nn.Module per seed, eval mode, on `device`
    states: list  # state_dict per seed (CPU)
    x_train: torch.Tensor  # [n, C, H, W] the training set the cell used (noisy labels)
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    device: torch.device


def load_cell(cell_dir: str | Path, prepared_dir: str | Path = "data/prepared",
              device: str = "auto") -> Cell:
    """A cell folder of the train-grid output (models/<cell_id>) and the prepared data."""
    cell_dir = Path(cell_dir)
    info = json.loads((cell_dir / "info.json").read_text())
    prep = Prepared(prepared_dir)
    dev = resolve_device(device)
    cfg = info["cell"]
    states, models = [], []
    for i in range(len(cfg["seeds"])):
        state = torch.load(cell_dir / f"seed_{i}.pt", weights_only=True)
        m = build_model(cfg["arch"], cfg["width"], prep.manifest["input_shape"], prep.n_classes,
                        seed=0).to(dev)
        m.load_state_dict(state)
        states.append(state)
        models.append(m.eval())
    x, y = prep.train_set(cfg["noise"], cfg["subset"])
    return Cell(cell_dir.name, info, models, states, x.to(dev), y.to(dev), prep.x_test.to(dev),
                prep.y_test.to(dev), dev)


def hessian(model, x, y, *, samples=1000, max_iter: int = 100, tol: float = 1e-3,
            repeats: int = 1, chunk: int = 1000, seed: int = 0) -> dict:
    """Top eigenvalue and trace (means over repeats, their spread, and every run's details)."""
    return hessian_of(model.eval(), x, y, samples=samples, max_iter=max_iter, tol=tol,
                      repeats=repeats, chunk=chunk, seed=seed)


def mode_connectivity(cell: Cell, i: int = 0, j: int = 1, *, epochs: int = 50,
                      lr: float = 0.01, momentum: float = 0.9, batch_size: int = 128,
                      weight_decay: float = 5e-4, points: int = 5, seed: int = 0,
                      endpoint_tol: float = 2.0) -> dict:
    """mc, t*, the linear-path barrier, and the error/loss profile of both paths."""
    x, y = cell.x_train, cell.y_train
    ends = (error_with_fresh_bn(cell.models[i], x, y), error_with_fresh_bn(cell.models[j], x, y))
    return curves.connect(cell.models[i], cell.states[i], cell.states[j], x, y, epochs=epochs,
                          lr=lr, momentum=momentum, batch_size=batch_size,
                          weight_decay=weight_decay, points=points, seed=seed,
                          endpoint_errors=ends, endpoint_tol=endpoint_tol)


@torch.no_grad()
def cka(cell: Cell, i: int = 0, j: int = 1, *, samples: int = 640, mixup_alpha: float = 16.0,
        debiased: bool = False, seed: int = 0) -> float:
    """Linear CKA of two models' softmax outputs on mixup points of the cell's training set."""
    pts = mixup_points(cell.x_train, samples, mixup_alpha, seed)
    a = torch.softmax(cell.models[i].eval()(pts), 1).cpu()
    b = torch.softmax(cell.models[j].eval()(pts), 1).cpu()
    return linear_cka(a, b, debiased)


def l2(cell: Cell, i: int = 0, j: int = 1) -> float:
    names = [n for n, _ in cell.models[0].named_parameters()]
    return l2_distance(cell.states[i], cell.states[j], names)
