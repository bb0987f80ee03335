"""Worker planning, failure isolation and the progress line."""

from __future__ import annotations

import io

from landscape_taxonomy import executor
from landscape_taxonomy.progress import Progress


def test_one_worker_per_gpu_pinned_and_packed(monkeypatch):
    monkeypatch.setattr(executor, "_gpu_count", lambda: 2)
    monkeypatch.setattr(executor, "_cpu_count", lambda: 16)
    envs = executor.plan_workers("auto", 2, "auto")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "0", "1", "1"]
    assert all(e["LT_TORCH_THREADS"] == "4" for e in envs)


def test_cpu_threads_are_divided_among_workers(monkeypatch):
    monkeypatch.setattr(executor, "_gpu_count", lambda: 0)
    monkeypatch.setattr(executor, "_cpu_count", lambda: 2)
    envs = executor.plan_workers(2, 1, "cpu")
    assert len(envs) == 2 and all(e["LT_TORCH_THREADS"] == "1" for e in envs)
    assert "CUDA_VISIBLE_DEVICES" not in envs[0]
    assert len(executor.plan_workers("auto", 1, "cpu")) == 2  # one per core


def _work(task):
    if task["n"] == 2:
        raise RuntimeError("boom")
    return task["n"] * 10


def test_a_failing_task_is_reported_and_the_others_finish():
    tasks = [{"n": i, "cell_id": f"c{i}"} for i in range(4)]
    outs = executor.run_tasks(_work, tasks, workers=1, device="cpu")
    assert [o["ok"] for o in outs] == [True, True, False, True]
    assert outs[3]["result"] == 30 and "boom" in outs[2]["error"]


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
from landscape_taxonomy import executor

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
assert executor.tune_allocator() and executor.tune_allocator()  # takes, idempotent
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
