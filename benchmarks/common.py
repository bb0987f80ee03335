"""Shared helpers for the benchmarks: data, trained models, timing."""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date

import torch

from landscape_taxonomy.cells import kernels
from landscape_taxonomy.config.schema import DataConfig
from landscape_taxonomy.training.datasets import load_digits
from landscape_taxonomy.training.loop import train_model
from landscape_taxonomy.training.models import build_model
from landscape_taxonomy.training.recipe import Recipe

# The stages' CPU kernels (train.cpu_kernels: portable), before torch first computes: the
# models trained here are those of any x86-64 machine with AVX2. numpy, loaded with torch,
# follows only in the processes run_all.py starts, which inherit this.
kernels.apply("portable")


def digits_train():
    """The default study's training set: digits, standardized as prepare-noisy-data does."""
    xtr, ytr, *_ = load_digits(DataConfig().test_fraction, 0)
    x = torch.from_numpy(xtr)
    mean, std = x.mean(), x.std()
    return (x - mean) / std, torch.from_numpy(ytr)


def trained_model(width: int, seed: int, x, y, epochs: int = 20, batch_size: int = 64,
                  arch: str = "cnn"):
    r = train_model(build_model(arch, width, (1, 8, 8), 10, seed=seed), x, y,
                    Recipe.from_config(max_epochs=epochs, batch_size=batch_size), seed=seed)
    m = build_model(arch, width, (1, 8, 8), 10, seed=seed)  # plain layout for both sides
    m.load_state_dict(r.state)
    return m.eval()


def compare(ours, theirs, reps: int) -> tuple[float, float, object, object]:
    """(median seconds of ours, of theirs, last results): the two alternate rep by rep, so
    a machine that slows down or speeds up mid-run weighs on both alike. ours(r) and
    theirs(r) get the rep's index, for whatever should differ between reps (seeds)."""
    t_ours, t_theirs, a, b = [], [], None, None
    for r in range(reps):
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            out = fn(r)
            times.append(time.perf_counter() - t0)
            if fn is ours:
                a = out
            else:
                b = out
    return statistics.median(t_ours), statistics.median(t_theirs), a, b


def machine() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (f"{date.today()} | {platform.machine()} {torch.get_num_threads()} threads | {dev} "
            f"({kernels.tag('portable')} kernels) | torch {torch.__version__}")
