"""Mode connectivity: the mc formula, identical endpoints, reproduced endpoints, convexity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape_taxonomy.metrics import curves
from landscape_taxonomy.metrics.cell import error_with_fresh_bn
from landscape_taxonomy.training.loop import train_model
from landscape_taxonomy.training.models import build_model
from landscape_taxonomy.training.recipe import Recipe


def test_mc_formula_on_hand_made_error_curves():
    barrier, i = curves.mc_from_errors([2.0, 10.0, 30.0, 12.0, 4.0])
    assert barrier == pytest.approx(3.0 - 30.0) and i == 2
    flat, _ = curves.mc_from_errors([1.0, 1.0, 1.0, 1.0, 1.0])
    assert flat == 0.0
    dip, i = curves.mc_from_errors([20.0, 12.0, 5.0, 9.0, 30.0])
    assert dip == pytest.approx(25.0 - 5.0) and i == 2  # > 0: the curve beats its endpoints
    # t* maximizes |gap|: a small dip next to a bigger barrier picks the barrier
    mixed, i = curves.mc_from_errors([10.0, 8.0, 10.0, 25.0, 10.0])
    assert mixed == pytest.approx(-15.0) and i == 3


def digits_slice(n=300):
    from landscape_taxonomy.training.datasets import load_digits
    xtr, ytr, *_ = load_digits(0.2, 0)
    return torch.from_numpy(xtr[:n]), torch.from_numpy(ytr[:n])


def trained(arch, width, seed, x, y, epochs=5):
    m = build_model(arch, width, (1, 8, 8), 10, seed=seed)
    r = train_model(m, x, y, Recipe.from_config(max_epochs=epochs, batch_size=32), seed=seed)
    m.load_state_dict(r.state)
    return m.eval()


def test_identical_endpoints_give_zero_mc():
    x, y = digits_slice()
    m = trained("cnn", 2, 0, x, y)
    e = error_with_fresh_bn(m, x, y)
    res = curves.connect(m, m.state_dict(), m.state_dict(), x, y, epochs=2, lr=0.01,
                         momentum=0.9, batch_size=64, weight_decay=5e-4, points=5, seed=0,
                         endpoint_errors=(e, e), endpoint_tol=1e-9)
    # the bend starts at the midpoint = the endpoint; training moves it little
    assert res["mc_linear"] == 0.0
    assert abs(res["mc"]) < 2.0


def test_curve_reproduces_batchnorm_endpoints():
    x, y = digits_slice()
    a, b = trained("cnn", 2, 0, x, y), trained("cnn", 2, 1, x, y)
    ends = (error_with_fresh_bn(a, x, y), error_with_fresh_bn(b, x, y))
    res = curves.connect(a, a.state_dict(), b.state_dict(), x, y, epochs=1, lr=0.01,
                         momentum=0.9, batch_size=64, weight_decay=5e-4, points=5, seed=0,
                         endpoint_errors=ends, endpoint_tol=1e-6)
    assert res["curve"][0]["train_error"] == pytest.approx(ends[0], abs=1e-6)
    assert res["curve"][-1]["train_error"] == pytest.approx(ends[1], abs=1e-6)
    assert res["line"][0]["train_error"] == pytest.approx(ends[0], abs=1e-6)


def test_wrong_endpoints_fail_loudly():
    x, y = digits_slice()
    a, b = trained("cnn", 2, 0, x, y), trained("cnn", 2, 1, x, y)
    with pytest.raises(curves.CurveError, match="endpoint"):
        curves.connect(a, a.state_dict(), b.state_dict(), x, y, epochs=1, lr=0.01, momentum=0.9,
                       batch_size=64, weight_decay=5e-4, points=3, seed=0,
                       endpoint_errors=(99.0, 99.0), endpoint_tol=0.5)


def test_convex_problem_is_well_connected():
    # Logistic regression: the loss is convex, so no barrier on the line or the curve.
    x, y = digits_slice(600)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        train_model(m, x, y, Recipe.from_config(max_epochs=30, batch_size=64, lr=0.05), seed=seed)
        models.append(m.eval())
    ends = tuple(error_with_fresh_bn(m, x, y) for m in models)
    res = curves.connect(models[0], models[0].state_dict(), models[1].state_dict(), x, y,
                         epochs=5, lr=0.01, momentum=0.9, batch_size=64, weight_decay=5e-4,
                         points=5, seed=0, endpoint_errors=ends, endpoint_tol=1e-9)
    assert abs(res["mc"]) < 1.0
    assert abs(res["mc_linear"]) < 1.0
