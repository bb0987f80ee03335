"""params.yaml, parsed once into typed, validated objects.

Every stage calls `load_params(path)` first. A bad key, type or value raises
`ConfigError` with one line naming the key and what is allowed, before any output
is touched. Library functions take plain values out of these objects.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn")
ARCHS = ("cnn", "resnet18", "mlp")
LOAD_PARAMS = ("width", "subset", "noise")
TEMPERATURE_PARAMS = ("batch_size", "lr", "weight_decay")


class ConfigError(ValueError):
    """A params.yaml problem; str() is the one-line message shown to the user."""


def _positive(v):
    return v > 0


def _fraction_open(v):  # (0, 1]
    return 0 < v <= 1


def _noise_range(v):  # [0, 1)
    return 0 <= v < 1


def _nonneg(v):
    return v >= 0


def check(pred, allowed):
    """Field metadata: a predicate and the human text of what it allows."""
    return {"check": pred, "allowed": allowed}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(default="digits", metadata=check(lambda v: v in DATASETS,
                                                          "one of " + ", ".join(DATASETS)))
    root: str = "data/raw"
    subset: float = field(default=1.0, metadata=check(_fraction_open, "a number in (0, 1]"))
    test_fraction: float = field(default=0.2, metadata=check(lambda v: 0 < v < 1,
                                                             "a number in (0, 1)"))
    download: bool = True


@dataclass(frozen=True)
class ModelConfig:
    arch: str = field(default="cnn", metadata=check(lambda v: v in ARCHS,
                                                    "one of " + ", ".join(ARCHS)))
    width: int = field(default=8, metadata=check(_positive, "an integer >= 1"))


@dataclass(frozen=True)
class AxisConfig:
    param: str
    values: tuple


@dataclass(frozen=True)
class GridConfig:
    load: AxisConfig
    temperature: AxisConfig
    seeds: int = field(default=3, metadata=check(_positive, "an integer >= 1"))


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = field(default="sgd", metadata=check(lambda v: v == "sgd", "sgd"))
    lr: float = field(default=0.05, metadata=check(_positive, "a number > 0"))
    momentum: float = field(default=0.9, metadata=check(lambda v: 0 <= v < 1,
                                                        "a number in [0, 1)"))
    batch_size: int = field(default=128, metadata=check(_positive, "an integer >= 1"))
    weight_decay: float = field(default=5e-4, metadata=check(_nonneg, "a number >= 0"))
    max_epochs: int = field(default=150, metadata=check(_positive, "an integer >= 1"))
    stop_tol: float = field(default=1e-4, metadata=check(_nonneg, "a number >= 0"))
    stop_patience: int = field(default=5, metadata=check(_positive, "an integer >= 1"))
    lr_schedule: str = field(default="constant",
                             metadata=check(lambda v: v in ("constant", "step"),
                                            "constant or step"))
    lr_decay_at: float = field(default=0.75, metadata=check(lambda v: 0 < v < 1,
                                                            "a number in (0, 1)"))
    lr_decay_factor: float = field(default=0.1, metadata=check(lambda v: 0 < v <= 1,
                                                               "a number in (0, 1]"))
    device: str = field(default="auto", metadata=check(lambda v: v in ("auto", "cpu", "cuda"),
                                                       "auto, cpu or cuda"))
    vectorize: object = field(default="auto", metadata=check(
        lambda v: v in ("auto", True, False), "auto, true or false"))


@dataclass(frozen=True)
class HessianConfig:
    samples: object = field(default=1000, metadata=check(
        lambda v: v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
        "a positive integer or 'all'"))
    max_iter: int = field(default=100, metadata=check(_positive, "an integer >= 1"))
    tol: float = field(default=1e-3, metadata=check(_positive, "a number > 0"))
    repeats: int = field(default=1, metadata=check(_positive, "an integer >= 1"))
    chunk: int = field(default=1000, metadata=check(_positive, "an integer >= 1"))


@dataclass(frozen=True)
class CurveConfig:
    epochs: int = field(default=50, metadata=check(_positive, "an integer >= 1"))
    lr: float = field(default=0.01, metadata=check(_positive, "a number > 0"))
    momentum: float = field(default=0.9, metadata=check(lambda v: 0 <= v < 1,
                                                        "a number in [0, 1)"))
    batch_size: int = field(default=128, metadata=check(_positive, "an integer >= 1"))
    weight_decay: float = field(default=5e-4, metadata=check(_nonneg, "a number >= 0"))
    points: int = field(default=5, metadata=check(lambda v: v >= 3, "an integer >= 3"))
    pairs: int = field(default=1, metadata=check(_positive, "an integer >= 1"))
    endpoint_tol: float = field(default=2.0, metadata=check(_nonneg,
                                                            "a number >= 0 (percent)"))


@dataclass(frozen=True)
class CkaConfig:
    samples: int = field(default=640, metadata=check(lambda v: v >= 4, "an integer >= 4"))
    mixup_alpha: float = field(default=16.0, metadata=check(_positive, "a number > 0"))
    debiased: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    hessian: HessianConfig = HessianConfig()
    curve: CurveConfig = CurveConfig()
    cka: CkaConfig = CkaConfig()


def _auto_or(pred, text):
    """'auto' or a number (not a bool) that passes `pred`."""
    def ok(v):
        return v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool)
                               and math.isfinite(v) and pred(v))
    return check(ok, f"'auto' or {text}")


@dataclass(frozen=True)
class PhaseConfig:
    """Phase boundaries: a number, or `auto` to read it off the data (thresholds.py)."""
    train_loss_threshold: object = field(default="auto",
                                         metadata=_auto_or(_positive, "a number > 0"))
    mc_threshold: object = field(default="auto", metadata=_auto_or(_nonneg, "a number >= 0"))
    cka_threshold: object = field(default="auto", metadata=_auto_or(
        lambda v: 0 <= v <= 1, "a number in [0, 1]"))


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = field(default="local", metadata=check(lambda v: v in ("local", "ray"),
                                                      "local or ray"))
    workers: object = field(default="auto", metadata=check(
        lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
        "a positive integer or 'auto'"))
    workers_per_gpu: int = field(default=1, metadata=check(_positive, "an integer >= 1"))
    address: object = None
    num_cpus: float = field(default=1.0, metadata=check(_nonneg, "a number >= 0"))
    num_gpus: float = field(default=0.0, metadata=check(_nonneg, "a number >= 0"))


@dataclass(frozen=True)
class StoreConfig:
    path: str = ".cells"
    on_corrupt: str = field(default="recompute", metadata=check(
        lambda v: v in ("recompute", "error"), "recompute or error"))


@dataclass(frozen=True)
class Params:
    grid: GridConfig
    seed: int = 0
    noise: float = field(default=0.0, metadata=check(_noise_range, "a number in [0, 1)"))
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    metrics: MetricsConfig = MetricsConfig()
    phase: PhaseConfig = PhaseConfig()
    executor: ExecutorConfig = ExecutorConfig()
    store: StoreConfig = StoreConfig()


# What each grid axis accepts, per value.
_AXIS_VALUE = {
    "width": (int, _positive, "integers >= 1"),
    "subset": (float, _fraction_open, "numbers in (0, 1]"),
    "noise": (float, _noise_range, "numbers in [0, 1)"),
    "batch_size": (int, _positive, "integers >= 1"),
    "lr": (float, _positive, "numbers > 0"),
    "weight_decay": (float, _nonneg, "numbers >= 0"),
}


def _type_name(tp) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, key):
    """Check a YAML scalar against a field type (ints are accepted where floats are)."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return value
    if tp in (int, str, bool) and isinstance(value, tp) and not (
            tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: must be {_type_name(tp)}, got {value!r}")


def _parse_axis(raw, key, allowed):
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: must be a mapping with 'param' and 'values'")
    unknown = set(raw) - {"param", "values"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key; allowed: param, values")
    param = raw.get("param")
    if param not in allowed:
        raise ConfigError(f"{key}.param: must be one of {', '.join(allowed)}, got {param!r}")
    values = raw.get("values")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{key}.values: must be a non-empty list")
    tp, pred, text = _AXIS_VALUE[param]
    out = []
    for v in values:
        try:
            v = _coerce(v, tp, f"{key}.values")
        except ConfigError:
            raise ConfigError(f"{key}.values: {param} values must be {text}, got {v!r}") from None
        if not pred(v):
            raise ConfigError(f"{key}.values: {param} values must be {text}, got {v!r}")
        out.append(v)
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}.values: values must be distinct, got {values!r}")
    return AxisConfig(param=param, values=tuple(out))


def _parse(cls, raw, prefix):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'params'}: must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(f"{where}: unknown key; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing; it is required")
            continue
        value = raw[name]
        if tp is AxisConfig:
            allowed = LOAD_PARAMS if name == "load" else TEMPERATURE_PARAMS
            value = _parse_axis(value, key, allowed)
        elif dataclasses.is_dataclass(tp):
            value = _parse(tp, value, key)
        elif tp is object or isinstance(tp, types.UnionType):
            pass  # free-form (checked by the predicate below)
        else:
            value = _coerce(value, tp, key)
        meta = f.metadata.get("check")
        if meta is not None and not meta(value):
            raise ConfigError(f"{key}: must be {f.metadata['allowed']}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def parse_params(raw: dict) -> Params:
    params = _parse(Params, raw, "")
    if params.grid.load.param == "noise" and params.noise != 0.0:
        raise ConfigError("noise: must be 0 when grid.load.param is noise (the grid sets it)")
    return params


def load_params(path: str | Path) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params: file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"params: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_params(raw or {})


def load_phase_params(path: str | Path | None, overrides: dict | None = None) -> PhaseConfig:
    """The phase: section alone (of a whole params.yaml or of a file holding only it), with
    command-line overrides (numbers as text, or 'auto'); no file means every key's default."""
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"params: file {path} does not exist")
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"params: {path} is not valid YAML "
                              f"({str(e).splitlines()[0]})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"params: {path} must be a mapping")
        raw = dict(doc.get("phase") or {})
    for key, text in (overrides or {}).items():
        if text is None:
            continue
        if text == "auto":
            raw[key] = "auto"
            continue
        try:
            raw[key] = float(text)
        except ValueError:
            raise ConfigError(f"--{key.replace('_', '-')}: must be a number or auto, "
                              f"got {text!r}") from None
    return _parse(PhaseConfig, raw, "phase")


def as_dict(obj) -> dict:
    """Plain dict of a config object (tuples as lists), e.g. for hashing or JSON."""
    return dataclasses.asdict(obj)
