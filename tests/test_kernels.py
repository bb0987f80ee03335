"""train.cpu_kernels: which CPU kernels a cell's key names, and that they reach every worker."""

from __future__ import annotations

import os

import pytest

from landscape_taxonomy.cells import grid, kernels
from landscape_taxonomy.cells.executor import settings as executor_settings
from landscape_taxonomy.cells.executor.run import run_tasks
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import ConfigError
from landscape_taxonomy.pipeline import keys as cell_keys
from landscape_taxonomy.pipeline import running

AVX2 = ("x86_64", "GenuineIntel", frozenset({"sse2", "avx2", "fma"}))
AVX512 = ("x86_64", "GenuineIntel", frozenset({"sse2", "avx2", "fma", "avx512f", "avx512bw",
                                                "avx512vl", "avx512dq", "hypervisor"}))
AMD_AVX2 = ("x86_64", "AuthenticAMD", AVX2[2])
AMD_AVX512 = ("x86_64", "AuthenticAMD", AVX512[2])
OLD_X86 = ("x86_64", "GenuineIntel", frozenset({"sse2", "sse4_2", "avx"}))
ARM = ("aarch64", "", frozenset({"fp", "asimd", "sve", "cpuid"}))


@pytest.fixture
def on_cpu(monkeypatch):
    """Pretend to be another machine; this process's environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in kernels.PORTABLE_ENV}

    def use(machine):
        monkeypatch.setattr(kernels, "cpu", lambda: machine)
    yield use
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    kernels._SET_HERE.clear()


def test_portable_names_one_kernel_set_for_every_avx2_cpu_and_native_tells_them_apart(on_cpu):
    on_cpu(AVX2)
    portable_avx2, native_avx2 = kernels.tag("portable"), kernels.tag("native")
    assert kernels.environment("portable") == kernels.PORTABLE_ENV
    on_cpu(AVX512)
    assert kernels.tag("portable") == portable_avx2 == "x86_64-avx2"
    native_512 = kernels.tag("native")
    assert native_512 != native_avx2 and "avx512f" in native_512 and "GenuineIntel" in native_512
    assert "hypervisor" not in native_512  # flags that pick no kernel do not split keys
    assert kernels.environment("native") == kernels.NUMPY_ENV  # numpy's, in both modes


def test_on_amd_cpus_where_mkl_keeps_its_own_dispatch_the_key_names_the_features(on_cpu):
    on_cpu(AMD_AVX2)
    zen3 = kernels.tag("portable")
    assert kernels.environment("portable") == kernels.PORTABLE_ENV
    on_cpu(AMD_AVX512)
    zen4 = kernels.tag("portable")
    assert zen3.startswith("x86_64-avx2:AuthenticAMD:") and zen3 != zen4
    assert "avx512f" in zen4 and "avx512f" not in zen3
    kernels.apply("portable")
    kernels.check(zen4)  # a worker on the same kind of CPU
    with pytest.raises(ConfigError, match="its CPU computes with x86_64-avx2:AuthenticAMD"):
        kernels.check(zen3)


@pytest.mark.parametrize("machine", [OLD_X86, ARM])
def test_a_cpu_portable_cannot_pin_computes_with_its_own_kernels_and_says_so(on_cpu, machine):
    on_cpu(machine)
    assert kernels.environment("portable") == {}
    assert kernels.tag("portable") == kernels.tag("native") != "x86_64-avx2"
    assert kernels.tag("portable").startswith(f"native:{machine[0]}")


def _with_train(params: dict, **train):
    return parse_params({**params, "train": {**params["train"], **train}})


def test_the_kernels_are_in_the_cell_keys_on_cpu_only(on_cpu, tiny_params, prepared):
    on_cpu(AVX512)
    portable, native = _with_train(tiny_params), _with_train(tiny_params, cpu_kernels="native")
    (cell, *_) = grid.cells(portable)
    prep = running.load_prepared(str(prepared))
    key = cell_keys.train_key(portable, cell, prep)
    assert key != cell_keys.train_key(native, cell, prep)
    entry = {"key": "k"}
    assert cell_keys.metrics_key(portable, entry) != cell_keys.metrics_key(native, entry)
    on_cpu(AVX2)  # another AVX2 machine: the same portable cells
    assert cell_keys.train_key(portable, cell, prep) == key
    assert cell_keys.kernels_key(_with_train(tiny_params, device="cuda")) is None  # GPU kernels


def test_apply_sets_the_pins_and_native_takes_them_back(on_cpu):
    on_cpu(AVX512)
    for k in kernels.PORTABLE_ENV:
        os.environ.pop(k, None)
    kernels.apply("portable")
    assert {k: os.environ.get(k) for k in kernels.PORTABLE_ENV} == kernels.PORTABLE_ENV
    kernels.apply("native")
    assert not any(k in os.environ for k in kernels.TORCH_ENV)
    assert all(os.environ[k] == v for k, v in kernels.NUMPY_ENV.items())
    assert kernels.tag("native").count(":") == 3  # arch, vendor, features: no overrides


def test_a_worker_whose_kernels_are_not_the_keys_refuses_the_cell(on_cpu):
    on_cpu(AVX512)
    kernels.apply("portable")
    kernels.check("x86_64-avx2")  # as its stage set it up
    kernels.check(None)  # a GPU cell
    os.environ.pop("ONEDNN_MAX_CPU_ISA")
    with pytest.raises(ConfigError, match=r"^train\.cpu_kernels: .*started without "
                                          r"ONEDNN_MAX_CPU_ISA"):
        kernels.check("x86_64-avx2")
    on_cpu(ARM)  # a Ray node of another kind
    with pytest.raises(ConfigError, match=r"its CPU computes with native:aarch64"):
        kernels.check("x86_64-avx2")
    with pytest.raises(ConfigError, match=r"holds CPU kernels native:x86_64"):
        kernels.check("native:x86_64:GenuineIntel:avx2,fma,avx512f")


def _environment(task):
    return {k: os.environ.get(k) for k in kernels.PORTABLE_ENV}


def test_local_workers_start_with_the_settings(monkeypatch):
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 2)
    env = dict(kernels.PORTABLE_ENV)
    for k in env:
        monkeypatch.delenv(k, raising=False)  # only what run_tasks hands them
    tasks = [{"cell_id": f"c{i}"} for i in range(2)]
    outs = run_tasks(_environment, tasks, workers=2, device="cpu", env=env)
    assert [o["result"] for o in outs] == [env, env]


_NUMPY_FEATURES = """
import json, os, sys
from landscape_taxonomy.cli.common import one_line_errors  # what wraps every command


def probe():
    import numpy
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as found
    names = os.environ.get("PIN", "").split()
    print(json.dumps({"on": [n for n in names if found.get(n)],
                      "openblas": os.environ.get("OPENBLAS_CORETYPE")}))


(one_line_errors(probe) if sys.argv[1] == "cli" else probe)()
"""


def test_every_command_pins_numpy_before_numpy_loads():
    import json
    import subprocess
    import sys

    if not kernels._avx2():
        pytest.skip("portable pins nothing on this CPU")
    names = kernels.NUMPY_ENV["NPY_DISABLE_CPU_FEATURES"]
    env = {k: v for k, v in os.environ.items() if k not in kernels.PORTABLE_ENV}
    env["PIN"] = names

    def features(how):
        out = subprocess.run([sys.executable, "-c", _NUMPY_FEATURES, how], env=env,
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)
    plain, pinned = features("plain"), features("cli")
    assert pinned == {"on": [], "openblas": "Haswell"}
    if not plain["on"]:
        pytest.skip("this CPU has no AVX-512 for numpy to use: nothing to tell apart")
    assert plain["openblas"] is None


@pytest.mark.slow
def test_ray_tasks_start_with_the_settings_though_the_driver_lacks_them(monkeypatch):
    pytest.importorskip("ray")
    env = dict(kernels.PORTABLE_ENV)
    for k in env:
        monkeypatch.delenv(k, raising=False)  # a local instance would inherit them otherwise
    names = sorted(env)
    outs = run_tasks(os.getenv, names, kind="ray", device="cpu", num_cpus=1, env=env)
    assert [o["result"] for o in outs] == [env[k] for k in names]
