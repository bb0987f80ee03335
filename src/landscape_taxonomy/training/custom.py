"""A researcher's own model or data, named by import path: `model.arch: mymodels:tiny_vit`,
`data.dataset: mydata:load`.

    model factory  factory(width, input_shape, n_classes) -> torch.nn.Module
    data loader    loader(seed) -> (x_train, y_train, x_test, y_test): numpy arrays, x as
                   [N, C, H, W] (signals [N, C, 1, L]) in any numeric type, y integer classes

`package.module:name` is imported as Python imports it (an installed package), or, where
that finds nothing, from the file `package/module.py` under the working directory (the
project root, where DVC runs the stages). The file's code, docstrings and comments left out,
is part of every cell key (`source_digest`): an edit to it retrains and re-measures.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
from pathlib import Path

from ..config.schema import IMPORT_PATH
from ..errors import ConfigError


def is_path(name: str) -> bool:
    return bool(IMPORT_PATH.match(name))


def _file_of(module: str) -> Path:
    return Path.cwd() / (module.replace(".", "/") + ".py")


def resolve(path: str, key: str):
    """The callable an import path names; a ConfigError naming `key` when it cannot."""
    module, _, name = path.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        file = _file_of(module)
        if e.name != module.split(".")[0] and e.name != module or not file.is_file():
            raise ConfigError(f"{key}: cannot import {module} ({e}); give an installed "
                              f"module or a file {module.replace('.', '/')}.py under the "
                              "project root") from None
        spec = importlib.util.spec_from_file_location(f"_custom_{module}", file)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # their code: say where, once
            raise ConfigError(f"{key}: {file} failed to load ({type(e).__name__}: {e})") \
                from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ConfigError(f"{key}: {module} has no callable {name!r}")
    return fn


def source_digest(path: str) -> str | None:
    """A digest of the code of the module an import path names (its syntax tree, without
    docstrings and comments), or None for a built-in name."""
    if not is_path(path):
        return None
    module = path.partition(":")[0]
    try:  # the module resolve() loads: an installed one first, else the file
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    file = Path(spec.origin) if spec is not None and spec.origin else _file_of(module)
    tree = ast.parse(file.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value,
                                                                           str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]
