"""Reading params.yaml into the schema's objects (schema.py), with one-line errors.

A duplicate key, an unknown key, a wrong type or a value out of range raises `ConfigError`,
whose str() is one line naming the dotted key and what is allowed, e.g.
`noise: must be a number in [0, 1), got 1.5`.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from ..errors import ConfigError
from .base import _Bad
from .schema import Params, PhaseConfig


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
