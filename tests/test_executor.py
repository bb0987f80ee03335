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


def test_allocator_setting_takes_on_glibc_and_keeps_results():
    import platform

    import pytest
    import torch

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator setting is glibc's")
    x = torch.randn(300, 64, 8, 8, generator=torch.Generator().manual_seed(0))  # > 128 KiB
    before = (x * 3).sum()
    assert executor.tune_allocator() and executor.tune_allocator()  # idempotent
    assert torch.equal((x * 3).sum(), before)
