"""optim.FusedSGD: torch's fused SGD update bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from landscape_taxonomy.training.optim import FusedSGD


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 5e-4), (0.0, 0.0), (0.9, 0.0)])
def test_the_same_steps_as_torch_fused_sgd(momentum, weight_decay):
    g = torch.Generator().manual_seed(0)
    ours = [torch.randn(5, 3, generator=g).requires_grad_(), torch.randn(7, generator=g)
            .requires_grad_()]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    a = FusedSGD(ours, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    b = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, weight_decay=weight_decay,
                        fused=True)
    x = torch.randn(11, 5, generator=g)
    for step in range(6):
        for opt, (w, v) in ((a, ours), (b, theirs)):
            for group in opt.param_groups:
                group["lr"] = 0.1 / (1 + step)
            loss = ((x @ w).sum(1) ** 2).mean() + v.square().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        assert all(torch.equal(p, q) for p, q in zip(ours, theirs))


def test_training_a_cell_never_imports_dynamo():
    code = ("import sys, torch\n"
            "from landscape_taxonomy.training.recipe import Recipe, sgd\n"
            "w = torch.zeros(3, requires_grad=True)\n"
            "opt = sgd([w], Recipe.from_config())\n"
            "(w - 1).square().sum().backward(); opt.step(); opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False"]
