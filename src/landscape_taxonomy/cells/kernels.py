"""Which CPU kernels compute a cell, and pinning them so that x86-64 machines agree bit for bit.

float32 results on CPU depend on the SIMD kernels torch's libraries pick when they first run:
oneDNN's convolutions on an AVX-512 CPU sum in another order than on an AVX2 one, and
training turns the last-bit differences into other models (on the default study, an AVX-512
machine with its own kernels moved cells across phase boundaries; README). So
`train.cpu_kernels` is part of what a cell is:

- `portable` (default) caps torch's kernels (ATen, oneDNN, MKL) and numpy's (its loops,
  OpenBLAS) at AVX2, which nearly every x86-64 CPU made since 2015 has: the same params give
  the same bits on such CPUs, and a store shared across them holds one answer per cell.
  MKL takes its pin on Intel CPUs only, so on AMD CPUs the key also names the vendor and
  features. Other architectures (arm64) compute with their own kernels, and say so.
- `native` lets each library take the best the CPU has (faster where it has AVX-512 or AMX);
  the key then names the CPU's vendor and features, so a shared store never mixes cells
  computed by different kernels.

The libraries read these settings once, when they first compute: `apply` must run before a
process computes with torch (the stage processes do it before torch is even imported; their
workers inherit the environment). Torch-free at import: keys are made in the stage process.
"""
from __future__ import annotations

import functools
import os
import platform
from importlib import metadata
from pathlib import Path


def _numpy_avx512() -> str:
    """numpy's names for its AVX-512 loops (renamed in 2.4); unknown names are ignored."""
    try:
        major, minor = (int(x) for x in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        major, minor = 2, 4
    if (major, minor) >= (2, 4):
        return "X86_V4 AVX512_ICL AVX512_SPR"
    return "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL " \
           "AVX512_ICL AVX512_SPR"


# torch's: ATen's vectorized ops and random draws, oneDNN's convolutions and MKL's BLAS at
# their AVX2 code paths. MKL takes its pin on Intel CPUs only (MKL_VERBOSE shows CNR:AUTO on
# AMD); its vendor-independent path (COMPATIBLE) would pin both but gives other models than
# every earlier run of this study (README, "Same numbers on other machines").
TORCH_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
# numpy's, in both modes (its work here is small: the Lanczos eigensolver, densities,
# correlations): its loops without AVX-512 and its OpenBLAS at the Haswell kernels. numpy
# reads them when imported: the console script sets them first (cli.py).
NUMPY_ENV = {"NPY_DISABLE_CPU_FEATURES": _numpy_avx512(), "OPENBLAS_CORETYPE": "Haswell"}
PORTABLE_ENV = {**TORCH_ENV, **NUMPY_ENV}

# The CPU features that select a float32 kernel, per architecture: what `native` keys name.
_FEATURES = {
    "x86_64": ("avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16"),
    "aarch64": ("asimd", "sve", "sve2", "bf16", "i8mm"),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

PORTABLE = "x86_64-avx2"  # the key's name for cells computed under the pins
_SET_HERE: set[str] = set()  # the variables apply() set in this process


@functools.cache
def cpu() -> tuple[str, str, frozenset[str]]:
    """(architecture, vendor, feature flags) of this machine; flags from /proc/cpuinfo
    (Linux), empty where it cannot be read."""
    arch = platform.machine().lower()
    arch = _ALIASES.get(arch, arch)
    vendor, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "vendor_id" and not vendor:
            vendor = value.strip()
        elif name in ("flags", "Features") and not flags:  # x86, arm64
            flags = frozenset(value.split())
    return arch, vendor, flags


def _avx2() -> bool:
    arch, _, flags = cpu()
    return arch == "x86_64" and {"avx2", "fma"} <= flags


def environment(mode: str) -> dict[str, str]:
    """The variables a process computing under `mode` must start with."""
    if not _avx2():
        return {}
    return dict(PORTABLE_ENV) if mode == "portable" else dict(NUMPY_ENV)


def tag(mode: str) -> str:
    """The kernels a cell computed here under `mode` runs with, for its key: `x86_64-avx2`
    where portable pins them all (Intel), the same plus vendor and features where MKL still
    picks its own (AMD), else the architecture, vendor and features that pick them (and any
    of TORCH_ENV's variables the user set)."""
    arch, vendor, flags = cpu()
    features = ",".join(f for f in _FEATURES.get(arch, ()) if f in flags)
    if mode == "portable" and _avx2():
        # MKL refuses its AVX2 pin on other vendors' CPUs and dispatches by their features
        return PORTABLE if vendor == "GenuineIntel" else f"{PORTABLE}:{vendor}:{features}"
    if mode == "portable":  # a CPU portable cannot pin: its own kernels, named as native's
        mode = "native"
    own = ",".join(f"{k}={os.environ[k]}" for k in sorted(TORCH_ENV)
                   if k in os.environ and k not in _SET_HERE)
    return ":".join(filter(None, (mode, arch, vendor, features, own)))


def _set(env: dict[str, str]) -> None:
    for k, v in env.items():
        if k not in os.environ:
            _SET_HERE.add(k)
        os.environ[k] = v


def apply(mode: str) -> None:
    """Set this process's environment for `mode` (inherited by the workers it starts); numpy
    follows only if it is not yet imported."""
    for k in list(_SET_HERE):  # an earlier apply's settings, e.g. portable before native
        os.environ.pop(k, None)
    _SET_HERE.clear()
    _set(environment(mode))


def pin_numpy() -> None:
    """NUMPY_ENV, in a process that has not imported numpy yet (cli.py, at its start)."""
    if _avx2():
        _set({k: v for k, v in NUMPY_ENV.items() if k not in os.environ})


def check(expected: str | None) -> None:
    """In the process about to compute a cell: its kernels must be those the cell's key
    holds (a Ray node of another CPU kind, a worker started without the settings)."""
    if expected is None:
        return
    mode = "portable" if expected.startswith(PORTABLE) else expected.partition(":")[0]
    here = tag(mode)
    missing = [k for k, v in environment(mode).items() if os.environ.get(k) != v]
    if here != expected or missing:
        from ..errors import ConfigError
        why = (f"it was started without {', '.join(missing)}" if missing else
               f"its CPU computes with {here}")
        raise ConfigError(f"train.cpu_kernels: this cell's key holds CPU kernels {expected}, "
                          f"but {why}; run every worker on the same kind of CPU (or use "
                          "train.device: cuda)")
