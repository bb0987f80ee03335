"""Second-order rules (vᵀHv and H v) against exact Hessians and autograd's double backward."""

from __future__ import annotations

import pytest
import torch
from test_hessian import exact_hessian
from torch import nn

from landscape_taxonomy.metrics.curvature import hessian, second_order
from landscape_taxonomy.training.models import SmallCNN, build_model


def with_running_stats(model, x):
    """Non-trivial BatchNorm statistics, then eval mode (what the Hessian is taken in)."""
    model.train()
    with torch.no_grad():
        model(x * 2 + 0.5)
    return model.eval()


def sequential_model():
    """Every rule outside the project's three models: a conv with its own bias, overlapping
    max-pool windows, an explicit pool and flatten."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                         nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))


def bare_model():
    """Layers with no bias and no BatchNorm, dilated and strided convolutions."""
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=2, dilation=2, bias=False), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6, bias=False),
                         nn.ReLU(), nn.Linear(6, 5))


CASES = {  # name -> (model, input shape, classes)
    "cnn": (lambda: build_model("cnn", 1, (1, 6, 6), 4, seed=0), (1, 6, 6), 4),
    # the same CNN on signals (MNIST-1D's shape, shortened): 1x3 kernels, 1x2 pooling
    "cnn-1d": (lambda: build_model("cnn", 1, (1, 1, 12), 4, seed=0), (1, 1, 12), 4),
    "mlp": (lambda: build_model("mlp", 1, (1, 4, 4), 4, seed=0), (1, 4, 4), 4),
    "sequential": (sequential_model, (2, 6, 6), 5),
    "bare": (bare_model, (2, 7, 7), 5),
}


def flat(parts):
    return torch.cat([t.flatten() for t in parts])


def unflat(vec, like):
    out, i = [], 0
    for p in like:
        out.append(vec[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_products_are_those_of_the_exact_hessian(name):
    make, shape, k = CASES[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (30,), generator=g)
    model = with_running_stats(make().double(), x)
    h = exact_hessian(model, x, y)
    params = list(model.parameters())
    vs = torch.randn(3, h.shape[0], generator=g, dtype=torch.float64)
    so = second_order.SecondOrder(model, x, y)
    got = so.quad([unflat(v, params) for v in vs])
    torch.testing.assert_close(got, torch.stack([v @ h @ v for v in vs]), rtol=1e-10,
                               atol=1e-12)
    for v in vs:
        hv = so.hvp(unflat(v, params))
        assert [t.shape for t in hv] == [p.shape for p in params]
        torch.testing.assert_close(flat(hv), h @ v, rtol=1e-10, atol=1e-12)


def test_resnet18_and_chunks_match_autograd():
    """The residual block against the double backward, on a sample split into chunks."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (24,), generator=g)
    model = with_running_stats(build_model("resnet18", 1, (3, 8, 8), 10, seed=1).double(), x)
    ref = hessian.HVP(model, x, y, engine="autograd")
    probes = [[torch.randn(p.shape, generator=g, dtype=torch.float64) for p in ref.params]
              for _ in range(2)]
    want = torch.tensor([q[0] for q in ref.quad(probes)], dtype=torch.float64)
    for chunk in (1000, 10):  # one kept primal pass; three recomputed chunks
        so = second_order.SecondOrder(model, x, y, chunk=chunk)
        torch.testing.assert_close(so.quad(probes), want, rtol=1e-10, atol=0)
        torch.testing.assert_close(flat(so.hvp(probes[0])), flat(ref(probes[0])), rtol=1e-10,
                                   atol=1e-12)


def test_float32_cnn_agrees_with_autograd_within_rounding():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (200,), generator=g)
    model = with_running_stats(build_model("cnn", 8, (1, 8, 8), 10, seed=0), x)
    ref = hessian.HVP(model, x, y, engine="autograd")
    probes = [[torch.randint(0, 2, p.shape, generator=g).float() * 2 - 1 for p in ref.params]
              for _ in range(4)]
    so = second_order.SecondOrder(model, x, y)
    want = torch.tensor([q[0] for q in ref.quad(probes)])
    torch.testing.assert_close(so.quad(probes), want, rtol=1e-4,
                               atol=1e-4 * want.abs().max().item())
    hv, ref_hv = flat(so.hvp(probes[0])), flat(ref(probes[0]))
    torch.testing.assert_close(hv, ref_hv, rtol=1e-4, atol=1e-4 * ref_hv.abs().max().item())


def test_estimates_are_the_same_with_either_engine():
    """Same random vectors, same stopping points, same estimates: only the arithmetic
    differs."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g)
    model = with_running_stats(build_model("cnn", 2, (1, 8, 8), 10, seed=0).double(), x)
    fast, slow = hessian.HVP(model, x, y), hessian.HVP(model, x, y, engine="autograd")
    assert fast.second_order is not None and slow.second_order is None
    a = hessian.trace(fast, 100, 1e-3, probes_per_pass=4,
                      generator=torch.Generator().manual_seed(0))
    b = hessian.trace(slow, 100, 1e-3, generator=torch.Generator().manual_seed(0))
    assert a.iterations == b.iterations
    assert a.value == pytest.approx(b.value, rel=1e-10)
    a, b = (hessian.top_eigenvalue(op, 100, 1e-4, generator=torch.Generator().manual_seed(0))
            for op in (fast, slow))
    assert a.iterations == b.iterations
    assert a.value == pytest.approx(b.value, rel=1e-10)


def test_models_it_does_not_cover_fall_back_to_autograd():
    tanh = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).eval()
    grouped = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 3)).eval()
    shared = nn.Linear(4, 4)
    tied = nn.Sequential(shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(4, 3)).eval()
    for model in (tanh, grouped, tied):
        assert second_order.compile_model(model) is None
    x, y = torch.randn(10, 4), torch.zeros(10, dtype=torch.long)
    for model in (tanh, tied):
        hvp = hessian.HVP(model, x, y)
        assert hvp.second_order is None
        assert hessian.trace(hvp, 20, 1e-3).value > 0


def test_a_changed_forward_is_caught(monkeypatch):
    model = build_model("cnn", 1, (1, 8, 8), 10, seed=0).eval()
    x, y = torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long)
    second_order.SecondOrder(model, x, y)  # the real forward passes the check
    monkeypatch.setattr(SmallCNN, "forward", lambda self, t: self.head(
        self.features(t).amax((2, 3))))  # max- instead of average-pooling
    with pytest.raises(RuntimeError, match="disagree"):
        second_order.SecondOrder(model, x, y)


def test_rejects_a_model_in_train_mode():
    model = build_model("cnn", 1, (1, 8, 8), 10, seed=0).train()
    with pytest.raises(ValueError, match="eval mode"):
        second_order.SecondOrder(model, torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))


def test_the_engine_setting_reaches_the_products(monkeypatch):
    # metrics.hessian.engine, through api.hessian as through the pipeline's cell_metrics
    from landscape_taxonomy import api
    from landscape_taxonomy.errors import ConfigError

    made = []
    real = hessian.HVP

    def spy(*args, **kw):
        made.append(real(*args, **kw))
        return made[-1]
    monkeypatch.setattr(hessian, "HVP", spy)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8, generator=g), torch.randint(0, 10, (40,), generator=g)
    model = with_running_stats(build_model("cnn", 1, (1, 8, 8), 10, seed=0), x)
    out = {e: api.hessian(model, x, y, samples=32, engine=e) for e in ("auto", "autograd")}
    assert [h.second_order is not None for h in made] == [True, False]
    for key in ("top", "trace"):
        assert out["auto"][key] == pytest.approx(out["autograd"][key], rel=1e-3)
    with pytest.raises(ConfigError, match="metrics.hessian.engine: must be auto or "
                                                  "autograd"):
        api.hessian(model, x, y, engine="jax")
