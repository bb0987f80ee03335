"""params.yaml, parsed once into typed, validated, frozen objects (pydantic).

The classes below are the one place a default is written. Their defaults are the shipped
params.yaml's values; params.yaml still lists every key because DVC tracks declared keys
only when they are present, and tests/test_config.py fails, naming the key, if the two
drift apart. The stages, the CLI and the notebook API (api.py) all read these classes.

Every stage calls `load_params(path)` before any work. A duplicate key, an unknown key, a
wrong type or a value out of range raises `ConfigError`, whose str() is one line naming the
dotted key and what is allowed, e.g. `noise: must be a number in [0, 1), got 1.5`.
Library functions take plain values out of these objects.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from .base import MAX_MODELS_PER_CELL, SEED_LIMIT, _Bad, _f, _Section
from .rugged import RuggedConfig

Dataset = Literal["mnist1d", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"]


Arch = Literal["cnn", "resnet18", "mlp", "vgg11"]


# A researcher's own model or data: `package.module:name` (training/custom.py)
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


LoadParam = Literal["width", "subset", "noise"]


TemperatureParam = Literal["batch_size", "lr", "weight_decay"]


DATASETS = typing.get_args(Dataset)


ARCHS = typing.get_args(Arch)


LOAD_PARAMS = typing.get_args(LoadParam)


TEMPERATURE_PARAMS = typing.get_args(TemperatureParam)


# digits (scikit-learn's bundled set): data.load_digits holds out round(f * 1797) images.
# data.test_fraction must leave as many images as classes on each side: f * 1797 >= 10
# and (1 - f) * 1797 >= 10, rounded inwards to 6 decimals so the bounds shown are the rule.
DIGITS_IMAGES = 1797


DIGITS_CLASSES = 10


DIGITS_TEST_FRACTIONS = (math.ceil(DIGITS_CLASSES / DIGITS_IMAGES * 1e6) / 1e6,
                         math.floor((1 - DIGITS_CLASSES / DIGITS_IMAGES) * 1e6) / 1e6)


PosInt = Annotated[int, Field(ge=1)]


class Mnist1dConfig(_Section):
    """MNIST-1D's generator (data.mnist1d_raw): how many signals to train and test on, and
    the seed of the pool they are drawn from (the study's `seed` picks the split)."""

    train_samples: int = _f(500, "an integer >= 10", ge=10)
    test_samples: int = _f(10000, "an integer >= 10", ge=10)
    seed: int = _f(42, "an integer in [0, 2^32)", ge=0, lt=SEED_LIMIT)
    # the package's transforms of its ten templates (its defaults): how hard the task is
    max_translation: int = _f(48, "an integer in [1, 60]", ge=1, le=60)
    corr_noise_scale: float = _f(0.25, "a number >= 0", ge=0)
    iid_noise_scale: float = _f(0.02, "a number >= 0", ge=0)
    shear_scale: float = _f(0.75, "a number >= 0", ge=0)
    scale_coeff: float = _f(0.4, "a number >= 0", ge=0)


def _builtin_or_import_path(known: tuple) -> AfterValidator:
    """A name of `known`, or a researcher's `package.module:name` (training/custom.py)."""
    def check(v: str) -> str:
        if v not in known and not IMPORT_PATH.match(v):
            raise ValueError("neither built in nor an import path")
        return v
    return AfterValidator(check)


DatasetName = Annotated[str, _builtin_or_import_path(DATASETS)]


ArchName = Annotated[str, _builtin_or_import_path(ARCHS)]


class DataConfig(_Section):
    dataset: DatasetName = _f("mnist1d", "one of " + ", ".join(DATASETS)
                      + ", or an import path package.module:loader")
    root: str = _f("data/raw", "a folder path")
    download: bool = _f(True, "true or false")
    subset: float = _f(1.0, "a number in (0, 1]", gt=0, le=1)
    test_fraction: float = _f(0.5, "a number in (0, 1)", gt=0, lt=1)
    mnist1d: Mnist1dConfig = Mnist1dConfig()

    @model_validator(mode="after")
    def _digits_split(self):
        lo, hi = DIGITS_TEST_FRACTIONS
        if self.dataset == "digits" and not lo <= self.test_fraction <= hi:
            raise _Bad("test_fraction",
                       f"a number in [{lo}, {hi}] for digits ({DIGITS_IMAGES} images, "
                       f"{DIGITS_CLASSES} classes: at least {DIGITS_CLASSES} test and "
                       f"{DIGITS_CLASSES} training images)", self.test_fraction)
        return self


class ModelConfig(_Section):
    arch: ArchName = _f("cnn", "one of " + ", ".join(ARCHS)
                   + ", or an import path package.module:factory")
    width: int = _f(8, "an integer >= 1", ge=1)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What each grid axis accepts, per value: (type, predicate, text).
_AXIS_VALUE = {
    "width": (int, lambda v: v >= 1, "integers >= 1"),
    "subset": (float, lambda v: 0 < v <= 1, "numbers in (0, 1]"),
    "noise": (float, lambda v: 0 <= v < 1, "numbers in [0, 1)"),
    "batch_size": (int, lambda v: v >= 1, "integers >= 1"),
    "lr": (float, lambda v: v > 0, "numbers > 0"),
    "weight_decay": (float, lambda v: v >= 0, "numbers >= 0"),
}


class _Axis(_Section):
    """One grid axis: the param it sets and its values (a tuple), checked per param."""

    @model_validator(mode="before")
    @classmethod
    def _values_per_param(cls, raw):
        if not isinstance(raw, dict) or raw.get("param") not in _AXIS_VALUE:
            return raw  # pydantic names what is wrong with the mapping or its param
        if "values" not in raw:
            return raw
        param, values = raw["param"], raw["values"]
        if not isinstance(values, (list, tuple)) or not values:
            raise _Bad("values", "a non-empty list", values)
        tp, pred, text = _AXIS_VALUE[param]
        out = []
        for v in values:
            ok_type = _is_int(v) if tp is int else _is_number(v)
            if not (ok_type and pred(v)):
                raise _Bad("values", f"{text} for {param}", v)
            out.append(tp(v))
        if len(set(out)) != len(out):
            raise _Bad("values", "distinct values", list(values))
        return {**raw, "values": tuple(out)}


class LoadAxis(_Axis):
    param: LoadParam = Field(description="one of " + ", ".join(LOAD_PARAMS))
    values: tuple[Any, ...] = Field(description="a non-empty list")


class TemperatureAxis(_Axis):
    param: TemperatureParam = Field(description="one of " + ", ".join(TEMPERATURE_PARAMS))
    values: tuple[Any, ...] = Field(description="a non-empty list")


class GridConfig(_Section):
    load: LoadAxis = LoadAxis(param="width", values=(2, 4, 8, 16, 32, 64))
    temperature: TemperatureAxis = TemperatureAxis(
        param="weight_decay", values=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2))
    seeds: int = _f(4, f"an integer in [1, {MAX_MODELS_PER_CELL}]", ge=1,
                    le=MAX_MODELS_PER_CELL)


class TrainConfig(_Section):
    optimizer: Literal["sgd"] = _f("sgd", "sgd")
    lr: float = _f(0.1, "a number > 0", gt=0)
    momentum: float = _f(0.9, "a number in [0, 1)", ge=0, lt=1)
    batch_size: int = _f(32, "an integer >= 1", ge=1)
    weight_decay: float = _f(5e-4, "a number >= 0", ge=0)
    # a bound, so that a slip (an extra zero or ten) cannot start a run of days; the
    # paper trains 150-200 epochs
    max_epochs: int = _f(40, "an integer in [1, 10000]", ge=1, le=10_000)
    stop_tol: float = _f(1e-4, "a number >= 0", ge=0)
    stop_patience: int = _f(5, "an integer >= 1", ge=1)
    lr_schedule: Literal["constant", "step"] = _f("step", "constant or step")
    lr_decay_at: float = _f(0.75, "a number in (0, 1)", gt=0, lt=1)
    lr_decay_factor: float = _f(0.1, "a number in (0, 1]", gt=0, le=1)
    # a short last batch (n % batch_size examples) takes a full lr step on few examples: on
    # a few hundred signals that keeps the loss up (docs/findings.md, the data study)
    drop_last: bool = _f(False, "true or false")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto, cpu or cuda")
    vectorize: Literal["auto"] | bool = _f("auto", "auto, true or false")
    # CPU kernels: portable (AVX2 on every x86-64, the same bits on any such CPU) or
    # native (the CPU's fastest; its features join the key). cells/kernels.py says why.
    cpu_kernels: Literal["portable", "native"] = _f("portable", "portable or native")


class HessianConfig(_Section):
    """method lanczos: Lanczos top_k eigenvalues with residuals, and the trace exact where it
    can be (trace auto, metrics/ggn.py), else deflated by the Lanczos basis with an SE stop
    rule (metrics/estimators.py); pyhessian: power iteration and Hutchinson with
    PyHessian's stop rules (max_iter, tol)."""

    samples: Literal["all"] | PosInt = _f(500, "a positive integer or 'all'")
    method: Literal["lanczos", "pyhessian"] = _f("lanczos", "lanczos or pyhessian")
    max_iter: int = _f(100, "an integer >= 1", ge=1)
    tol: float = _f(1e-3, "a number > 0", gt=0)
    top_k: int = _f(1, "an integer >= 1", ge=1)
    lanczos_steps: int = _f(20, "an integer >= 1", ge=1)
    trace_rel_se: float = _f(0.01, "a number > 0", gt=0)
    trace_min_probes: int = _f(16, "an integer >= 2", ge=2)
    max_probes: int = _f(1000, "an integer >= 2", ge=2)
    repeats: int = _f(1, "an integer >= 1", ge=1)
    chunk: int = _f(1000, "an integer >= 1", ge=1)
    # auto: the hand-derived products (metrics/second_order.py) where they cover the model,
    # measured faster on CPU; autograd: always the double backward (benchmarks/
    # bench_curvature.py times both on a device, CUDA included, and names the faster)
    engine: Literal["auto", "autograd"] = _f("auto", "auto or autograd")
    # auto: the exact trace where the Hessian's equals the Gauss-Newton matrix's (metrics/
    # ggn.py: mlp, cnn, resnet18), else the deflated Hutchinson; hutchinson: always probes
    trace: Literal["auto", "hutchinson"] = _f("auto", "auto or hutchinson")

    @model_validator(mode="after")
    def _probe_bounds(self):
        if self.max_probes < self.trace_min_probes:
            raise _Bad("max_probes", f"an integer >= trace_min_probes "
                       f"({self.trace_min_probes})", self.max_probes)
        return self


class CurveConfig(_Section):
    epochs: int = _f(40, "an integer >= 1", ge=1)
    lr: float = _f(0.05, "a number > 0", gt=0)
    momentum: float = _f(0.9, "a number in [0, 1)", ge=0, lt=1)
    batch_size: int = _f(32, "an integer >= 1", ge=1)
    weight_decay: float = _f(5e-4, "a number >= 0", ge=0)
    points: int = _f(5, "an integer >= 3", ge=3)
    pairs: int = _f(2, "an integer >= 1", ge=1)
    endpoint_tol: float = _f(2.0, "a number >= 0 (percent)", ge=0)


class CkaConfig(_Section):
    samples: int = _f(640, "an integer >= 4", ge=4)
    mixup_alpha: float = _f(16.0, "a number > 0", gt=0)
    debiased: bool = _f(False, "true or false")


class MetricsConfig(_Section):
    hessian: HessianConfig = HessianConfig()
    curve: CurveConfig = CurveConfig()
    cka: CkaConfig = CkaConfig()


class PhaseConfig(_Section):
    """Phase boundaries: a number, or `auto` to read it off the data (report/thresholds.py)."""

    train_loss_threshold: Literal["auto"] | Annotated[float, Field(gt=0)] = _f(
        "auto", "'auto' or a number > 0")
    mc_threshold: Literal["auto"] | Annotated[float, Field(ge=0)] = _f(
        "auto", "'auto' or a number >= 0")
    cka_threshold: Literal["auto"] | Annotated[float, Field(ge=0, le=1)] = _f(
        "auto", "'auto' or a number in [0, 1]")
    # a JSON file of thresholds (a summary.json classify-phase wrote, or {"train_loss": x,
    # "mc": y, "cka": z}): every threshold left at auto takes the file's value
    thresholds_from: str | None = _f(None, "a path to a JSON file of thresholds, or null")


class ExecutorConfig(_Section):
    kind: Literal["local", "ray"] = _f("local", "local or ray")
    workers: Literal["auto"] | PosInt = _f("auto", "a positive integer or 'auto'")
    workers_per_gpu: int = _f(1, "an integer >= 1", ge=1)
    address: str | None = _f(None, "a Ray cluster address or null")
    num_cpus: float = _f(1.0, "a number >= 0", ge=0)
    num_gpus: float = _f(0.0, "a number >= 0", ge=0)
    connect_timeout: float = _f(30.0, "seconds > 0", gt=0)


class StoreConfig(_Section):
    path: str = _f(".cells", "a folder path")
    on_corrupt: Literal["recompute", "error"] = _f("recompute", "recompute or error")


class Params(_Section):
    seed: int = _f(0, "an integer in [0, 2^32)", ge=0, lt=SEED_LIMIT)
    noise: float = _f(0.0, "a number in [0, 1)", ge=0, lt=1)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    grid: GridConfig = GridConfig()
    train: TrainConfig = TrainConfig()
    metrics: MetricsConfig = MetricsConfig()
    phase: PhaseConfig = PhaseConfig()
    executor: ExecutorConfig = ExecutorConfig()
    store: StoreConfig = StoreConfig()
    rugged: RuggedConfig = RuggedConfig()

    @model_validator(mode="after")
    def _noise_axis(self):
        if self.grid.load.param == "noise" and self.noise != 0.0:
            raise _Bad("noise", "0 when grid.load.param is noise (the grid sets it)",
                       self.noise)
        return self
