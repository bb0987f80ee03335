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

import inspect
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

Dataset = Literal["mnist1d", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"]
Arch = Literal["cnn", "resnet18", "mlp", "vgg11"]
# A researcher's own model or data: `package.module:name` (custom.py)
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
LoadParam = Literal["width", "subset", "noise"]
TemperatureParam = Literal["batch_size", "lr", "weight_decay"]
DATASETS = typing.get_args(Dataset)
ARCHS = typing.get_args(Arch)
LOAD_PARAMS = typing.get_args(LoadParam)
TEMPERATURE_PARAMS = typing.get_args(TemperatureParam)

# Seeds. grid.model_seeds gives model i of a study seed s the seed s*1000 + i, so a study
# holds at most 1000 models per cell (more would reuse the next study seed's models). The
# seeds reach torch.manual_seed / torch.Generator.manual_seed (s, s+1, s*1000+i: they take
# [-2**63, 2**64)), numpy's default_rng (s: it takes any integer >= 0) and derive_seed
# (hashed to 31 bits, any integer). [0, 2**32), the usual 32-bit seed, keeps every one of
# them valid with room to spare: s*1000 + 999 < 2**42.
SEED_LIMIT = 2**32
MAX_MODELS_PER_CELL = 1000

# digits (scikit-learn's bundled set): data.load_digits holds out round(f * 1797) images.
# data.test_fraction must leave as many images as classes on each side: f * 1797 >= 10
# and (1 - f) * 1797 >= 10, rounded inwards to 6 decimals so the bounds shown are the rule.
DIGITS_IMAGES = 1797
DIGITS_CLASSES = 10
DIGITS_TEST_FRACTIONS = (math.ceil(DIGITS_CLASSES / DIGITS_IMAGES * 1e6) / 1e6,
                         math.floor((1 - DIGITS_CLASSES / DIGITS_IMAGES) * 1e6) / 1e6)


class ConfigError(ValueError):
    """A params.yaml problem; str() is the one-line message shown to the user."""


class _Bad(ValueError):
    """Raised inside a validator: `key` relative to the model validated, what is allowed."""

    def __init__(self, key: str, allowed: str, value):
        super().__init__(f"{key}: must be {allowed}, got {value!r}")
        self.key, self.allowed, self.value = key, allowed, value


def _f(default, allowed: str, **constraints):
    """A field: its one default, and the text of what it allows (the error message's)."""
    return Field(default, description=allowed, **constraints)


class _Section(BaseModel):
    """Frozen, unknown keys refused, no type coercion (a bool is not a number, '1' is not
    1; an integer is accepted where a number is), NaN and infinities refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_section(cls, raw):
        return {} if raw is None else raw  # `metrics:` with nothing under it: all defaults


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
    """A name of `known`, or a researcher's `package.module:name` (custom.py)."""
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
    load: LoadAxis = LoadAxis(param="width", values=(2, 4, 8, 16, 32))
    temperature: TemperatureAxis = TemperatureAxis(
        param="weight_decay", values=(1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2))
    seeds: int = _f(4, f"an integer in [1, {MAX_MODELS_PER_CELL}]", ge=1,
                    le=MAX_MODELS_PER_CELL)


class TrainConfig(_Section):
    optimizer: Literal["sgd"] = _f("sgd", "sgd")
    lr: float = _f(0.05, "a number > 0", gt=0)
    momentum: float = _f(0.9, "a number in [0, 1)", ge=0, lt=1)
    batch_size: int = _f(32, "an integer >= 1", ge=1)
    weight_decay: float = _f(5e-4, "a number >= 0", ge=0)
    # a bound, so that a slip (an extra zero or ten) cannot start a run of days; the
    # paper trains 150-200 epochs
    max_epochs: int = _f(40, "an integer in [1, 10000]", ge=1, le=10_000)
    stop_tol: float = _f(1e-4, "a number >= 0", ge=0)
    stop_patience: int = _f(5, "an integer >= 1", ge=1)
    lr_schedule: Literal["constant", "step"] = _f("constant", "constant or step")
    lr_decay_at: float = _f(0.75, "a number in (0, 1)", gt=0, lt=1)
    lr_decay_factor: float = _f(0.1, "a number in (0, 1]", gt=0, le=1)
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto, cpu or cuda")
    vectorize: Literal["auto"] | bool = _f("auto", "auto, true or false")
    # CPU kernels: portable (AVX2 on every x86-64, the same bits on any such CPU) or
    # native (the CPU's fastest; its features join the key). kernels.py says why.
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
    """Phase boundaries: a number, or `auto` to read it off the data (thresholds.py)."""

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


# -- errors ------------------------------------------------------------------------------

def _section_of(annotation):
    return annotation if inspect.isclass(annotation) and issubclass(annotation, BaseModel) \
        else None


def _one_line(e: ValidationError, model: type[BaseModel], prefix: str = "") -> ConfigError:
    """pydantic's first error as `<dotted.key>: must be <allowed>, got <value>`."""
    err = e.errors(include_url=False)[0]
    keys, field, section = [prefix] if prefix else [], None, model
    loc = list(err["loc"])
    while loc and section is not None and loc[0] in section.model_fields:
        name = loc.pop(0)
        keys.append(name)
        field = section.model_fields[name]
        section = _section_of(field.annotation)
    # what is left of loc: a union member's tag, a list index, or an unknown key
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _Bad):
        return ConfigError(".".join([*keys, cause.key]) + f": must be {cause.allowed}, "
                                                          f"got {cause.value!r}")
    if err["type"] == "extra_forbidden":
        where = ".".join([*keys, str(loc[0])])
        return ConfigError(f"{where}: unknown key; allowed: {', '.join(section.model_fields)}")
    where = ".".join(keys) or "params"
    if field is None or section is not None:
        allowed = "a mapping"
    else:
        allowed = field.description or str(field.annotation)
    got = "nothing" if err["type"] == "missing" else repr(err["input"])
    return ConfigError(f"{where}: must be {allowed}, got {got}")


def _validate(model: type[BaseModel], raw, prefix: str = ""):
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise _one_line(e, model, prefix) from None


# -- reading -----------------------------------------------------------------------------

class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        self.key, self.line, self.first = key, line, first


def _yaml12_floats(resolvers: dict) -> dict:
    """SafeLoader's implicit resolvers plus YAML 1.2 floats, which PyYAML (YAML 1.1) reads as
    strings when they have an exponent but no dot: `dvc exp run -S train.weight_decay=1e-5`
    writes `1e-5` (DVC's YAML is 1.2)."""
    out = {k: list(v) for k, v in resolvers.items()}
    float_12 = ("tag:yaml.org,2002:float",
                re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"))
    for first in "-+0123456789.":
        out.setdefault(first, []).append(float_12)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    yaml_implicit_resolvers = _yaml12_floats(yaml.SafeLoader.yaml_implicit_resolvers)

    def construct_document(self, node):
        self._paths = {}
        self._index(node, "")
        return super().construct_document(node)

    def _index(self, node, path: str):
        """Each mapping node's dotted path, for the error message."""
        if isinstance(node, yaml.MappingNode):
            self._paths[id(node)] = path
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                self._index(v, f"{path}.{name}" if path else name)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._index(v, f"{path}[{i}]")

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable: the base class says so
                if first is not key_node:
                    path = self._paths.get(id(node), "")
                    raise _DuplicateKey(f"{path}.{key}" if path else str(key),
                                        key_node.start_mark.line + 1,
                                        first.start_mark.line + 1)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path):
    """A YAML file's contents, or ConfigError for a missing file, bad YAML, a duplicate key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params: file {path} does not exist")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as d:
        raise ConfigError(f"{d.key}: duplicate key at line {d.line} of {path} "
                          f"(first at line {d.first})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"params: {path} is not valid YAML ({str(e).splitlines()[0]})") from None


def parse_params(raw: dict) -> Params:
    # an empty section means its defaults, but not for the grid: `grid:` left empty would
    # train the default 35-cell grid when the user meant some other
    if isinstance(raw, dict) and "grid" in raw:
        grid = raw["grid"]
        if grid is None:
            raise ConfigError("grid: is empty; give load, temperature and seeds (an empty "
                              "grid: is not read as the default grid)")
        for axis in ("load", "temperature"):
            if isinstance(grid, dict) and axis in grid and grid[axis] is None:
                raise ConfigError(f"grid.{axis}: is empty; give param and values")
    return _validate(Params, raw)


def load_params(path: str | Path) -> Params:
    return parse_params(read_yaml(path) or {})


def load_phase_params(path: str | Path | None, overrides: dict | None = None) -> PhaseConfig:
    """The phase: section alone (of a whole params.yaml or of a file holding only it; a key
    it leaves out takes the schema's default), with command-line overrides (numbers as text,
    or 'auto'). No file at all, as for a table from elsewhere, means every threshold auto."""
    if path is None:
        raw = {name: "auto" for name in PhaseConfig.model_fields if name.endswith("_threshold")}
    else:
        doc = read_yaml(path) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"params: {path} must be a mapping")
        raw = doc.get("phase") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"phase: must be a mapping, got {raw!r}")
        raw = dict(raw)
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
    return _validate(PhaseConfig, raw, "phase")


def updated(section: BaseModel, prefix: str = "", **changes) -> BaseModel:
    """A copy of a config object with some keys changed, validated as params.yaml is (a bad
    value raises the ConfigError naming `prefix.key`)."""
    return _validate(type(section), {**section.model_dump(), **changes}, prefix)


def as_dict(obj: BaseModel) -> dict:
    """Plain dict of a config object (tuples as lists), e.g. for hashing or JSON."""
    return obj.model_dump(mode="json")
