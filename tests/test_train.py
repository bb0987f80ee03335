"""Training: determinism, the stopping rule, divergence, and seeds trained at once."""

from __future__ import annotations

import pytest
import torch

from landscape_taxonomy.training.datasets import load_digits
from landscape_taxonomy.training.loop import train_cell, train_model
from landscape_taxonomy.training.models import build_model, count_params
from landscape_taxonomy.training.recipe import Recipe, StopRule, TrainResult


def digits(n=256, dtype=torch.float32):
    xtr, ytr, *_ = load_digits(0.2, 0)
    return torch.from_numpy(xtr[:n]).to(dtype), torch.from_numpy(ytr[:n])


def feed(losses, **recipe):
    """Run the stop rule over a loss sequence; each kept state records its epoch."""
    rule, res, going = StopRule(Recipe.from_config(**recipe)), TrainResult(state={}), True
    for epoch, loss in enumerate(losses):
        assert going, "fed past the end"
        going = rule.end_epoch(res, epoch, 0.1, loss, 0.5, lambda e=epoch: {"epoch": e + 1})
    return res, going


def test_stop_rule_stops_after_patience_calm_epochs_and_keeps_that_model():
    res, going = feed([1.0, 0.5, 0.50005, 0.5, 0.49995], stop_tol=1e-4, stop_patience=3)
    assert not going and res.stopped_early and not res.diverged
    assert res.epochs == 5 and res.best_epoch == 5 and res.state == {"epoch": 5}
    assert [r["epoch"] for r in res.log] == [1, 2, 3, 4, 5]
    assert res.log[-1] == {"epoch": 5, "lr": 0.1, "train_loss": 0.49995, "train_acc": 0.5}


def test_stop_rule_keeps_the_lowest_loss_and_a_big_change_resets_the_count():
    res, going = feed([1.0, 0.5, 0.5, 0.9, 0.9, 0.7], stop_tol=1e-4, stop_patience=2)
    assert going and not res.stopped_early  # calm 1, reset by 0.5 -> 0.9, calm 1 again
    assert res.best_epoch == 2 and res.state == {"epoch": 2} and res.epochs == 6


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_stop_rule_ends_a_diverged_model_with_its_last_state(bad):
    res, going = feed([1.0, 0.8, bad], stop_patience=5)
    assert not going and res.diverged and not res.stopped_early
    assert res.epochs == 3 and res.best_epoch == 2 and res.state == {"epoch": 3}


def test_same_seed_same_model_on_cpu():
    x, y = digits()
    runs = [train_model(build_model("cnn", 2, (1, 8, 8), 10, seed=3), x, y,
                        Recipe.from_config(max_epochs=2, batch_size=32), seed=3) for _ in range(2)]
    for k in runs[0].state:
        assert torch.equal(runs[0].state[k], runs[1].state[k])


def test_stops_when_loss_is_flat_and_keeps_that_model():
    x, y = digits(64)
    # lr 0: the loss never changes, so the rule fires after `patience` calm epochs
    r = train_model(build_model("mlp", 1, (1, 8, 8), 10, seed=0), x, y,
                    Recipe.from_config(lr=0.0, momentum=0.0, max_epochs=50, stop_patience=5),
                    seed=0)
    assert r.stopped_early and r.epochs == 6 and r.best_epoch == 6


def test_keeps_lowest_loss_checkpoint_without_early_stop():
    x, y = digits()
    m = build_model("mlp", 2, (1, 8, 8), 10, seed=0)
    r = train_model(m, x, y, Recipe.from_config(max_epochs=4, batch_size=32, stop_tol=0.0), seed=0)
    losses = [row["train_loss"] for row in r.log]
    assert not r.stopped_early and r.best_epoch == 1 + losses.index(min(losses))


def test_divergence_is_recorded_not_raised():
    x, y = digits()
    m = build_model("mlp", 4, (1, 8, 8), 10, seed=0)
    r = train_model(m, x * 1e4, y, Recipe.from_config(lr=1e3, max_epochs=5), seed=0)
    assert r.diverged


@pytest.mark.parametrize("arch,width", [("cnn", 2), ("mlp", 2), ("resnet18", 1)])
def test_vectorized_training_equals_one_at_a_time(arch, width):
    # float64 so the two paths differ only by reassociation at 1e-16, not float32 chaos
    x, y = digits(96, torch.float64)
    recipe = Recipe.from_config(max_epochs=3, batch_size=16, stop_tol=0.0)
    kw = dict(arch=arch, width=width, input_shape=(1, 8, 8), n_classes=10, x=x, y=y,
              recipe=recipe, seeds=[0, 1, 2], device=torch.device("cpu"))
    loop = train_cell(**kw, vectorize=False)
    vec = train_cell(**kw, vectorize=True)
    for a, b in zip(loop, vec):
        assert a.best_epoch == b.best_epoch and a.epochs == b.epochs
        assert set(a.state) == set(b.state)
        for k in a.state:
            assert torch.allclose(a.state[k].double(), b.state[k].double(), rtol=1e-6,
                                  atol=1e-8), k
            assert b.state[k].is_contiguous(), k  # plain tensors, whatever the stack's layout
        assert [r["train_loss"] for r in a.log] == pytest.approx(
            [r["train_loss"] for r in b.log], rel=1e-9)


def test_models_scale_with_width():
    sizes = [count_params(build_model("resnet18", k, (3, 32, 32), 10, seed=0)) for k in (1, 2)]
    assert sizes[1] > 3 * sizes[0]
    assert count_params(build_model("resnet18", 64, (3, 32, 32), 10, seed=0)) == pytest.approx(
        11.17e6, rel=0.01)  # the usual ResNet18 at k = 64
    out = build_model("resnet18", 2, (3, 8, 8), 100, seed=0)(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 100)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("vectorize", [True, False])
def test_fast_paths_train_the_models_a_plain_loop_trains(vectorize, drop_last):
    """Stacked seeds (or one at a time), channels-last layout and fused SGD against the
    textbook loop (plain layout, torch's for-loop SGD) on the same batches, in float64; 100
    examples in batches of 16 leave a last batch of 4, trained or (drop_last) skipped."""
    import torch.nn.functional as F

    x, y = digits(100, torch.float64)
    recipe = Recipe.from_config(max_epochs=3, batch_size=16, stop_tol=0.0, drop_last=drop_last)
    fast = train_cell(arch="cnn", width=2, input_shape=(1, 8, 8), n_classes=10, x=x, y=y,
                      recipe=recipe, seeds=[0, 1], device=torch.device("cpu"),
                      vectorize=vectorize)
    for seed, res in zip([0, 1], fast):
        model = build_model("cnn", 2, (1, 8, 8), 10, seed=seed).double()
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay, foreach=False)
        g = torch.Generator().manual_seed(seed)  # the documented batch order
        for epoch in range(recipe.max_epochs):
            # the default step schedule: x lr_decay_factor from lr_decay_at of the epochs
            decayed = epoch >= int(recipe.lr_decay_at * recipe.max_epochs)
            for group in opt.param_groups:
                group["lr"] = recipe.lr * (recipe.lr_decay_factor if decayed else 1.0)
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), recipe.batch_size):
                idx = perm[i:i + recipe.batch_size]
                if drop_last and len(idx) < recipe.batch_size:
                    continue
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        assert res.best_epoch == recipe.max_epochs  # the loss fell every epoch: last model
        for k, v in model.state_dict().items():
            assert torch.allclose(res.state[k].to(v.dtype), v, rtol=1e-7, atol=1e-9), k
