"""Worker planning, failure isolation and the progress line."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import time

import pytest

from landscape_taxonomy.cells.executor import settings as executor_settings
from landscape_taxonomy.cells.executor.run import run_tasks
from landscape_taxonomy.cells.progress import Progress
from landscape_taxonomy.errors import ExecutorError


def test_one_worker_per_gpu_pinned_and_packed(monkeypatch):
    monkeypatch.setattr(executor_settings, "_gpu_count", lambda: 2)
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 16)
    envs = executor_settings.plan_workers("auto", 2, "auto")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "0", "1", "1"]
    assert all(e["LT_TORCH_THREADS"] == "4" for e in envs)


def test_cpu_threads_are_divided_among_workers(monkeypatch):
    monkeypatch.setattr(executor_settings, "_gpu_count", lambda: 0)
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 2)
    envs = executor_settings.plan_workers(2, 1, "cpu")
    assert len(envs) == 2 and all(e["LT_TORCH_THREADS"] == "1" for e in envs)
    assert "CUDA_VISIBLE_DEVICES" not in envs[0]
    assert len(executor_settings.plan_workers("auto", 1, "cpu")) == 2  # one per core


def _work(task):
    if task["n"] == 2:
        raise RuntimeError("boom")
    return task["n"] * 10


def test_a_failing_task_is_reported_and_the_others_finish():
    tasks = [{"n": i, "cell_id": f"c{i}"} for i in range(4)]
    outs = run_tasks(_work, tasks, workers=1, device="cpu")
    assert [o["ok"] for o in outs] == [True, True, False, True]
    assert outs[3]["result"] == 30 and "boom" in outs[2]["error"]


def _die_on_two(task):
    if task["n"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    return task["n"] * 10


def test_a_worker_that_dies_fails_only_its_cell_and_is_replaced():
    tasks = [{"n": i, "cell_id": f"c{i}"} for i in range(5)]
    outs = run_tasks(_die_on_two, tasks, workers=2, device="cpu")
    assert [o["ok"] for o in outs] == [True, True, False, True, True]
    assert [o["result"] for o in outs if o["ok"]] == [0, 10, 30, 40]
    assert "worker died (killed by SIGKILL" in outs[2]["error"] and not outs[2]["user"]


def test_a_failed_task_keeps_its_traceback_and_tells_bad_input_from_a_bug():
    from landscape_taxonomy.errors import ConfigError

    def bad_input(task):
        raise ConfigError("grid.seeds: must be an integer >= 1, got 0")

    out = run_tasks(_work, [{"n": 2}], workers=1, device="cpu")[0]
    assert out["type"] == "RuntimeError" and out["message"] == "boom" and not out["user"]
    assert "Traceback (most recent call last)" in out["trace"] and "_work" in out["trace"]
    out = run_tasks(bad_input, [{"n": 1}], workers=1, device="cpu")[0]
    assert out["user"] and out["type"] == "ConfigError"


@pytest.mark.parametrize("settings, key", [
    ({"workers": 0}, "executor.workers"),
    ({"workers": -3}, "executor.workers"),
    ({"workers": 2.5}, "executor.workers"),
    ({"workers_per_gpu": 0}, "executor.workers_per_gpu"),
    ({"kind": "slurm"}, "executor.kind"),
    ({"num_cpus": -1}, "executor.num_cpus"),
    ({"connect_timeout": 0}, "executor.connect_timeout"),
    ({"device": "cuda"}, "train.device"),
    ({"kind": "ray", "address": "no-port-here"}, "executor.address"),
    ({"kind": "ray", "num_gpus": 1}, "executor.num_gpus"),
    ({"kind": "ray", "no_ray": True}, "executor.kind"),
])
def test_settings_that_cannot_work_are_refused_before_any_task(monkeypatch, settings, key):
    settings = dict(settings)
    no_ray = settings.pop("no_ray", False)
    monkeypatch.setattr(executor_settings, "_gpu_count", lambda: 0)  # a machine without CUDA
    monkeypatch.setattr(executor_settings, "_has_ray", lambda: not no_ray)
    ran = []
    with pytest.raises(ExecutorError, match=f"^{re.escape(key)}: ") as e:
        run_tasks(ran.append, [{"n": 1}], **{"device": "cpu", **settings})
    assert not ran and "\n" not in str(e.value)


def test_more_workers_than_cores_is_allowed(monkeypatch):
    monkeypatch.setattr(executor_settings, "_cpu_count", lambda: 2)
    executor_settings.check_settings(workers=16, device="cpu")
    assert len(executor_settings.plan_workers(16, 1, "cpu")) == 16


def _unused_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_that_does_not_answer_fails_in_seconds_naming_it():
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_unused_loopback_port()}"
    t0 = time.monotonic()
    with pytest.raises(ExecutorError) as e:
        run_tasks(_work, [{"n": 1}], kind="ray", address=address, connect_timeout=1.5,
                           device="cpu")
    assert time.monotonic() - t0 < 10
    assert str(e.value).startswith(f"executor.address: nothing answers at {address} within "
                                   "1.5s")


def test_progress_prints_plain_lines_off_a_terminal():
    buf = io.StringIO()
    p = Progress("train-grid", 4, done=1, stream=buf)
    p.start()
    p.finish(True)
    p.finish(False)
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[train-grid] 1/4 cells done (1 reused), 0 running, 0 failed")
    assert "3/4 cells done (1 reused), 0 running, 1 failed" in lines[2]
    assert "left" in lines[1] and lines[-1].startswith("[train-grid] finished in")


PROBE = """
import ctypes, torch
from landscape_taxonomy.cells.executor.guard import tune_allocator

class Info(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t fields
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped_while_holding():  # bytes glibc serves by mmap while a 64 MiB tensor lives
    t = torch.empty(16 << 20)
    out = libc.mallinfo2().hblkhd
    del t
    return out

x = torch.randn(300, 64, 8, 8, generator=torch.Generator().manual_seed(0))
before, plain = (x * 3).sum(), mapped_while_holding()
assert tune_allocator() and tune_allocator()  # takes, idempotent
tuned = mapped_while_holding()
assert torch.equal((x * 3).sum(), before)
print(plain >= 64 << 20, tuned < 64 << 20)
"""


def test_allocator_setting_keeps_large_blocks_off_mmap_and_keeps_results():
    import platform
    import subprocess
    import sys

    import pytest

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator setting is glibc's")
    # a fresh process: the setting is process-wide and other tests may have made it here
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]  # mmap'd before, from the heap after


def test_tasks_carry_absolute_paths(tmp_path, tiny_params, prepared, monkeypatch):
    # a Ray worker may start in another working directory: relative paths would not resolve
    import shutil
    from pathlib import Path

    from landscape_taxonomy.config.loading import parse_params
    from landscape_taxonomy.pipeline import train as train_stage

    monkeypatch.chdir(tmp_path)
    shutil.copytree(prepared, "prepared")
    p = parse_params({**tiny_params, "store": {"path": "store"}})
    seen = []

    class Planned(Exception):
        pass

    def run(fn, tasks, *a, **k):  # the tasks as the executor would get them, then stop
        seen.extend(tasks)
        raise Planned

    monkeypatch.setattr(train_stage, "run_cells", run)
    with pytest.raises(Planned):
        train_stage.train(p, Path("prepared"), Path("models"))
    assert seen and all(Path(t.store).is_absolute() and Path(t.prepared).is_absolute()
                        for t in seen)
