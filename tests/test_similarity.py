"""CKA closed-form cases and L2 distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape_taxonomy.metrics.similarity import gram_cka, l2_distance, linear_cka, mixup_points


def feats(n=50, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_features_give_one():
    x = feats()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transform_and_isotropic_scaling():
    x, y = feats(seed=0), feats(seed=1)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 7.5 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, y @ q * 0.01) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, y, debiased=True) == pytest.approx(
        linear_cka(x @ q, 3 * y, debiased=True), rel=1e-10)


def test_equals_gram_matrix_form():
    x, y = feats(seed=2), feats(d=3, seed=3)
    assert linear_cka(x, y) == pytest.approx(gram_cka(x @ x.T, y @ y.T), rel=1e-10)


def test_known_value_for_independent_one_dimensional_features():
    # For 1-D features CKA is the squared Pearson correlation.
    x = feats(n=200, d=1, seed=4)
    y = 0.5 * x + feats(n=200, d=1, seed=5)
    r = torch.corrcoef(torch.cat([x, y], 1).T)[0, 1].item()
    assert linear_cka(x, y) == pytest.approx(r * r, rel=1e-10)


def test_debiased_is_nan_not_garbage_when_undefined():
    x = feats(n=3)
    assert math.isnan(linear_cka(x, x, debiased=True))
    const = torch.ones(20, 4, dtype=torch.float64)
    assert math.isnan(linear_cka(const, feats(n=20, d=4)))


def test_mixup_points_are_convex_combinations_from_a_seed():
    x = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])  # two images, 0 and 1
    a = mixup_points(x, 500, 16.0, seed=0)
    b = mixup_points(x, 500, 16.0, seed=0)
    assert torch.equal(a, b)
    assert (a >= 0).all() and (a <= 1).all()
    # λ ~ Beta(16, 16): mean 1/2, var = 1/(4 (2α+1)) = 1/132; mixes of distinct images are λ or 1-λ
    mixed = a[(a > 0) & (a < 1)].view(-1, 4)[:, 0]
    assert mixed.mean().item() == pytest.approx(0.5, abs=0.02)
    assert mixed.var().item() == pytest.approx(1 / 132, rel=0.25)
    assert not torch.equal(a, mixup_points(x, 500, 16.0, seed=1))


def test_mixup_points_draw_from_numpys_seeded_generator():
    x = torch.arange(5, dtype=torch.float64).view(5, 1) * 10  # image k is the number 10 k
    rng = np.random.default_rng(7)
    i, j = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    lam = rng.beta(2.0, 2.0, 300)
    want = lam * 10 * i + (1 - lam) * 10 * j
    got = mixup_points(x, 300, 2.0, seed=7)
    assert got.shape == (300, 1) and got.dtype == torch.float64
    assert np.allclose(got[:, 0].numpy(), want, rtol=0, atol=1e-12)


def test_l2_distance_over_parameters_only():
    a = {"w": torch.zeros(3), "bn.running_mean": torch.zeros(2)}
    b = {"w": torch.tensor([3.0, 4.0, 0.0]), "bn.running_mean": torch.ones(2) * 100}
    assert l2_distance(a, b, ["w"]) == pytest.approx(5.0)
