"""Stage prepare-noisy-data: the dataset as tensors and its label-noise draws, in
data/prepared (training/data.py writes it).
"""

from __future__ import annotations

from pathlib import Path

from ..cells import grid
from ..config.loading import as_dict
from ..config.schema import Params
from ..training import custom
from ..training import data as data_mod


def prepare(p: Params, out_dir: Path) -> dict:
    """Write the prepared folder, or leave it untouched when it was made from the same
    inputs by the same code (DVC reruns the stage for any edit of its code, most of which
    change no byte of it). It reads neither `noise` nor the grid: the noise draws serve
    every level, so a noise change or one more load value never reruns it."""
    stamp = {"dataset": p.data.dataset, "root": p.data.root,
             "test_fraction": p.data.test_fraction, "seed": p.seed,
             "mnist1d": as_dict(p.data.mnist1d), "code": grid.code_hash("training.data:prepare")}
    if p.data.dataset == "mnist1d":  # its generator's code is the package's, not ours
        from importlib.metadata import version
        stamp["mnist1d_package"] = version("mnist1d")
    if custom.is_path(p.data.dataset):  # a researcher's loader: its code, so an edit reloads
        stamp["loader"] = custom.source_digest(p.data.dataset)
    kept = data_mod.reuse(out_dir, stamp)
    if kept is not None:
        return kept
    return data_mod.prepare(out_dir, dataset=p.data.dataset, root=p.data.root,
                            download=p.data.download, test_fraction=p.data.test_fraction,
                            seed=p.seed, stamp=stamp, mnist1d=as_dict(p.data.mnist1d))
