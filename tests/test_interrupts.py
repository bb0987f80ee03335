"""Ctrl-C, SIGTERM and kill -9 of a running grid, and a Ray address that hangs.

Each test runs the real console script in a subprocess on the tiny grid with two local
workers, waits until the store holds a finished cell, then signals it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import TINY_OVERRIDES, env_with_venv, merge, run, shipped_params, write_params
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.pipeline import prepare as prepare_stage

CLI = [sys.executable, "-m", "landscape_taxonomy.cli"]
DVC = [sys.executable, "-m", "dvc"]


def grid_params(store: Path, **executor) -> dict:
    """Eight cells slow enough (a few seconds each) to interrupt between two of them."""
    p = merge(shipped_params(), TINY_OVERRIDES)
    p["grid"]["load"]["values"] = [1, 2, 4, 8]
    p["grid"]["temperature"]["values"] = [16, 32]
    p["train"]["max_epochs"] = 6
    p["executor"] = {**p["executor"], "workers": 2, **executor}
    p["store"]["path"] = str(store)
    return p


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare_stage.prepare(parse_params(grid_params(Path("unused"))), out)
    return out


def finished(store: Path, kind: str = "train") -> set[str]:
    d = store / kind
    return {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.is_dir() else set()


def start_train(tmp_path: Path, prepared: Path, params: dict, **kw) -> subprocess.Popen:
    path = write_params(tmp_path / "params.yaml", params)
    return subprocess.Popen(CLI + ["train", "--params", str(path), "--data", str(prepared),
                                   "--out", str(tmp_path / "models")],
                            cwd=tmp_path, env=env_with_venv(), text=True, **kw)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def workers_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def still_alive(procs: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """Those of procs still running after timeout (a zombie counts as gone)."""
    def alive(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in procs if alive(p)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_workers_keeps_finished_cells_and_exits(tmp_path, prepared, sig):
    store = tmp_path / "store"
    params = grid_params(store)
    log = open(tmp_path / "stderr.txt", "w+")
    # SIGINT as a terminal's Ctrl-C sends it: to the whole process group, workers included;
    # SIGTERM as a scheduler (or DVC's caller) sends it: to the stage process only.
    proc = start_train(tmp_path, prepared, params, stdout=subprocess.DEVNULL, stderr=log,
                       start_new_session=True)
    try:
        wait_for(lambda: len(workers_of(proc.pid)) >= 2 or proc.poll() is not None, 120,
                 "the workers")
        wait_for(lambda: finished(store) or proc.poll() is not None, 300, "a finished cell")
        kids = workers_of(proc.pid)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        t0 = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log.seek(0)
    err = log.read()
    assert elapsed < 10, f"took {elapsed:.1f}s to stop:\n{err}"
    assert proc.returncode == 128 + sig, err
    assert not still_alive(kids), f"left behind: {still_alive(kids, 0)}"
    done = finished(store)
    assert 1 <= len(done) < 8, "the signal should land in the middle of the grid"
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"interrupted by {sig.name}: train-grid: (\d) of 8 cells finished "
                     rf"\(\1 new, 0 reused\) and kept in the store {re.escape(str(store))}; "
                     "the next run reuses them", last)
    assert m, err
    # a worker may rename its cell into the store just as it is stopped: one more is kept
    assert int(m[1]) in (len(done), len(done) - 1)
    assert "Traceback" not in err

    # The next run starts from those cells (interrupted again as soon as it says so).
    proc = start_train(tmp_path, prepared, params, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, start_new_session=True)
    try:
        first = proc.stderr.readline()
        assert first.startswith(f"[train-grid] {len(done)}/8 cells done ({len(done)} reused)")
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, rest
    assert finished(store) >= done


def test_kill_9_of_the_stage_leaves_no_worker_behind(tmp_path, prepared):
    store = tmp_path / "store"
    proc = start_train(tmp_path, prepared, grid_params(store), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True)
    kids = []
    try:
        wait_for(lambda: len(workers_of(proc.pid)) >= 2 or proc.poll() is not None, 120,
                 "the workers")
        time.sleep(1.0)  # let them get into their first cell
        kids = workers_of(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        left = still_alive(kids)
    finally:
        for p in kids:  # never leave them to the next test, whatever happened
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    assert len(kids) >= 2 and not left, f"orphaned workers: {left}"


# -- Ray ---------------------------------------------------------------------------------

@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never says anything."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.mark.parametrize("case", ["timeout", "SIGTERM"])
def test_a_ray_address_that_hangs_times_out_and_obeys_sigterm(tmp_path, prepared, silent_port,
                                                              case):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{silent_port}"
    timeout = 3 if case == "timeout" else 120
    params = grid_params(tmp_path / "store", kind="ray", address=address,
                         connect_timeout=timeout)
    proc = start_train(tmp_path, prepared, params, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, start_new_session=True)
    try:
        first = proc.stderr.readline()  # the progress line: connecting comes next
        assert first.startswith("[train-grid] 0/8 cells done"), first
        t0 = time.monotonic()
        if case == "SIGTERM":
            time.sleep(2.0)
            proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    last = err.strip().splitlines()[-1]
    if case == "timeout":
        assert proc.returncode == 2, err
        assert last.startswith(f"error: executor.address: {address} accepts connections but "
                               "no Ray cluster answered within 3s"), err
        assert elapsed < 20
    else:
        assert proc.returncode == 143, err
        assert last.startswith("interrupted by SIGTERM: train-grid: 0 of 8 cells"), err
        assert elapsed < 12


HEAD = """
import ray, time
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
time.sleep(600)
"""

CLIENT = """
import sys
from landscape_taxonomy.cells.executor.run import run_tasks
from landscape_taxonomy.errors import ExecutorError

def double(task):
    return 2 * task["n"]

outs = run_tasks(double, [{"n": i} for i in range(3)], kind="ray",
                 address=sys.argv[1], connect_timeout=60, device="cpu")
print([o["result"] for o in outs])
try:
    run_tasks(double, [{"n": 1}], kind="ray", address=sys.argv[1], num_cpus=4,
              device="cpu")
except ExecutorError as e:
    print(e)
"""


@pytest.mark.slow
def test_a_ray_cluster_on_loopback_is_reached_through_its_address(tmp_path):
    pytest.importorskip("ray")
    env = {**env_with_venv(), "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = subprocess.Popen([sys.executable, "-c", HEAD], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        address = head.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        res = subprocess.run([sys.executable, "-c", CLIENT, address], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    finally:
        head.terminate()
        try:
            head.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "[0, 2, 4]", res.stdout + res.stderr
    assert lines[1] == (f"executor.num_cpus: 4 per cell, but no node of the Ray cluster at "
                        f"{address} has more than 1 CPU(s); no cell could start")


# -- DVC ---------------------------------------------------------------------------------

def repro_until_a_cell_is_done(project: Path, tiny_params: dict, epochs: int):
    """`dvc repro` of an eight-cell grid in a session of its own, once a cell is finished:
    (the dvc process, every process under it)."""
    params = merge(tiny_params, {"train": {"max_epochs": epochs, "stop_tol": 0.0},
                                 "grid": {"load": {"values": [1, 2, 4, 8]},
                                          "temperature": {"values": [16, 32]}},
                                 "executor": {"workers": 2}})
    write_params(project / "params.yaml", params)
    proc = subprocess.Popen(DVC + ["repro"], cwd=project, env=env_with_venv(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: finished(project / ".cells") or proc.poll() is not None, 600,
                 "a finished cell")
        assert proc.poll() is None, "the run ended before it could be interrupted"
        return proc, workers_of(proc.pid)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def assert_next_repro_reuses_what_finished(project: Path) -> None:
    done = finished(project / ".cells")
    res = run(DVC + ["repro"], project)  # no "Unable to acquire lock"
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"({len(done)} reused)" in out or f"({len(done) + 1} reused)" in out, out


@pytest.mark.slow
def test_ctrl_c_during_dvc_repro_releases_the_lock(project, tiny_params):
    proc, group = repro_until_a_cell_is_done(project, tiny_params, epochs=6)
    try:
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and elapsed < 20
    assert not still_alive(group)
    assert_next_repro_reuses_what_finished(project)


@pytest.mark.slow
def test_sigterm_to_dvc_alone_stops_the_stage_and_its_workers(project, tiny_params):
    # DVC passes no SIGTERM on: the stage watches the dvc process and stops when it ends.
    proc, tree = repro_until_a_cell_is_done(project, tiny_params, epochs=30)
    try:
        assert len(tree) >= 3  # the shell, the stage, its workers
        proc.send_signal(signal.SIGTERM)  # to dvc only, not its group
        proc.wait(timeout=30)
        assert not still_alive(tree, timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert 0 < len(finished(project / ".cells")) < 8  # stopped, not run to the end
    assert_next_repro_reuses_what_finished(project)
