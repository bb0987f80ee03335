"""The `rugged:` section of params.yaml: the one-dimensional study's own grid and model
(rugged.py)."""

from __future__ import annotations

import math

from pydantic import model_validator

from .base import SEED_LIMIT, _Bad, _f, _Section


def _positive_values(name: str, raw):
    """A list of distinct numbers > 0, as a tuple (YAML gives lists; the section is strict)."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise _Bad(name, "a non-empty list of numbers > 0", raw)
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v <= 0:
            raise _Bad(name, "numbers > 0", v)
    if len(set(raw)) != len(raw):
        raise _Bad(name, "distinct values", list(raw))
    return tuple(float(v) for v in raw)


class RuggedConfig(_Section):
    """The `rugged:` section of params.yaml: the one-dimensional study (rugged.py, our model). The
    docstring's symbols: c0 chance_loss, w basin_width, λ_f fit_load, p fit_exponent, ρ0
    rough_amplitude, λ_r rough_load, q rough_exponent, 2π/ω rough_period, K harmonics, σ0
    init_scale, X half_width, f step_fraction."""

    seed: int = _f(0, "an integer in [0, 2^32)", ge=0, lt=SEED_LIMIT)
    loads: tuple[float, ...] = _f((0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.0, 16.0, 22.0,
                                   32.0), "a non-empty list of distinct numbers > 0")
    temperatures: tuple[float, ...] = _f((1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
                                         "a non-empty list of distinct numbers > 0")
    runs: int = _f(64, "an even integer >= 4", ge=4)  # per cell; pairs 2i, 2i+1 give mc, cka
    steps: int = _f(4000, "an integer >= 1", ge=1)
    # η = step_fraction / κ(λ): below 2/κ every step is stable, wherever it lands
    step_fraction: float = _f(0.5, "a number in (0, 1]", gt=0, le=1)
    init_scale: float = _f(0.2, "a number > 0", gt=0)
    # the plateau's extent: its entropy is what draws hot runs out of the basin
    half_width: float = _f(20.0, "a number > 0", gt=0)
    chance_loss: float = _f(1.0, "a number > 0", gt=0)
    basin_width: float = _f(1.0, "a number > 0", gt=0)
    fit_load: float = _f(0.7, "a number > 0", gt=0)
    fit_exponent: float = _f(3.0, "a number > 0", gt=0)
    rough_amplitude: float = _f(0.2, "a number >= 0", ge=0)
    rough_load: float = _f(3.0, "a number > 0", gt=0)
    rough_exponent: float = _f(3.0, "a number >= 0", ge=0)
    rough_period: float = _f(0.05, "a number > 0", gt=0)
    harmonics: int = _f(1, "an integer >= 1", ge=1)
    # gradient steps that quench an end point into its basin of L_T (cka)
    quench_steps: int = _f(1000, "an integer >= 0", ge=0)
    # points on each pair's line (odd: t = 1/2, a symmetric barrier's top, is one of them)
    path_points: int = _f(513, "an odd integer >= 3", ge=3)

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, raw):
        if isinstance(raw, dict):
            raw = dict(raw)
            for name in ("loads", "temperatures"):
                if name in raw:
                    raw[name] = _positive_values(name, raw[name])
        return raw

    @model_validator(mode="after")
    def _shapes(self):
        if self.runs % 2:
            raise _Bad("runs", "an even integer >= 4 (runs are paired)", self.runs)
        if self.path_points % 2 == 0:
            raise _Bad("path_points", "an odd integer >= 3 (t = 1/2 on the path)",
                       self.path_points)
        if self.init_scale >= self.half_width:
            raise _Bad("init_scale", f"a number below half_width ({self.half_width:g})",
                       self.init_scale)
        return self
