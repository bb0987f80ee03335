"""Grid cells: what each (load, temperature) cell trains, and the keys its results go by.

A cell's key hashes everything that determines its result: the resolved training config,
the checksum of the data it trains on, and the source of the library code that computes
it (every function and class its worker can reach: code_hash.py). Names and timestamps never
enter, so a renamed grid or a touched file reuses work and any real change recomputes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache

from ..config.schema import Params
from .code_hash import package, parse_entry
from .io import number_text


@dataclass(frozen=True)
class Cell:
    load_param: str
    load: float
    temperature_param: str
    temperature: float
    arch: str
    width: int
    subset: float
    noise: float
    batch_size: int
    lr: float
    weight_decay: float
    seeds: tuple

    @property
    def cell_id(self) -> str:
        return (f"{self.load_param}={number_text(self.load)}__"
                f"{self.temperature_param}={number_text(self.temperature)}")

    def train_config(self) -> dict:
        """Everything about the cell that training reads (axis names excluded)."""
        d = asdict(self)
        for k in ("load_param", "load", "temperature_param", "temperature"):
            d.pop(k)
        d["seeds"] = list(self.seeds)
        return d


def model_seeds(seed: int, n: int) -> tuple:
    """Seeds of the models in a cell; the same for every cell, as in the paper."""
    return tuple(seed * 1000 + i for i in range(n))


def cells(p: Params) -> list[Cell]:
    """The grid, load-major, each value resolved against the defaults it overrides."""
    out = []
    for lv in p.grid.load.values:
        for tv in p.grid.temperature.values:
            v = {"width": p.model.width, "subset": p.data.subset, "noise": p.noise,
                 "batch_size": p.train.batch_size, "lr": p.train.lr,
                 "weight_decay": p.train.weight_decay}
            v[p.grid.load.param] = lv
            v[p.grid.temperature.param] = tv
            out.append(Cell(load_param=p.grid.load.param, load=lv,
                            temperature_param=p.grid.temperature.param, temperature=tv,
                            arch=p.model.arch, seeds=model_seeds(p.seed, p.grid.seeds), **v))
    return out


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


@cache
def code_hash(*entries: str) -> str:
    """Hash of the source of every function and class the entry points (`module:name`) can
    run, found from the imports (code_hash.py), less the modules that cannot change a number."""
    return package().code_hash([parse_entry(e) for e in entries], exclude=NO_NUMBERS)


# The workers that compute each kind of cell; what they reach is what a key's code hash covers.
TRAIN_CODE = ("pipeline.train:train_task",)
METRICS_CODE = ("pipeline.metrics:metrics_task",)

# Modules the workers reach that decide where a result is kept, never what it is; leaving
# them out lets the store and file handling change without recomputing every cell.
NO_NUMBERS = (
    "cells.store",  # the cell store: which folder a key's result lives in, written atomically
    "cells.io",  # atomic writes of files and folders: how, not what, is written
)
