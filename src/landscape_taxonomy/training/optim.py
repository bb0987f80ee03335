"""SGD without torch.optim's start-up cost; the update of torch.optim.SGD(fused=True).

Its own module so the metrics code (curve fits) can use it without reaching the training
recipe: a metrics cell's key covers what it runs, and the stop rule is not that.
"""

from __future__ import annotations


class FusedSGD:
    """torch.optim.SGD(fused=True)'s update, bit for bit: the same `torch._fused_sgd_` call.

    Why not torch.optim.SGD itself: its first use imports torch._dynamo (its methods are
    wrapped to keep torch.compile out), 2.3 s of every worker's first cell on 2 cores, more
    than a small cell's training. Only what our loops use: `param_groups[i]["lr"]`,
    `zero_grad(set_to_none=True)`, `step()`. Devices without the fused kernel (mps, or a
    torch without it) get torch's own SGD.
    """

    def __new__(cls, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        import torch

        params = list(params)
        if not (hasattr(torch, "_fused_sgd_")
                and all(p.device.type in ("cpu", "cuda") for p in params)):
            return torch.optim.SGD(params, lr=lr, momentum=momentum,
                                   weight_decay=weight_decay)
        self = super().__new__(cls)
        self.params = params
        self.param_groups = [{"params": params, "lr": lr, "momentum": momentum,
                              "weight_decay": weight_decay}]
        self.buffers: list | None = None  # momentum buffers, made at the first step
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        import torch

        with torch.no_grad():
            self._step()

    def _step(self) -> None:
        import torch

        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        momentum = group["momentum"]
        first = momentum != 0 and self.buffers is None
        if first:
            self.buffers = [torch.empty_like(p) for p in self.params]
        by_kind: dict = {}  # the fused kernel takes one device and dtype per call
        for i in live:
            p = self.params[i]
            by_kind.setdefault((p.device, p.dtype), []).append(i)
        for idx in by_kind.values():
            torch._fused_sgd_([self.params[i] for i in idx],
                              [self.params[i].grad for i in idx],
                              [] if momentum == 0 else [self.buffers[i] for i in idx],
                              weight_decay=group["weight_decay"], momentum=momentum,
                              lr=group["lr"], dampening=0.0, nesterov=False, maximize=False,
                              is_first_step=first, grad_scale=None, found_inf=None)
