"""The cell store: checksums verified on reuse, a lock per cell, the umask, store.path."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from landscape_taxonomy.cells import grid
from landscape_taxonomy.cells.io import atomic_dir, atomic_write_text
from landscape_taxonomy.cells.store import MANIFEST, CellStore
from landscape_taxonomy.cells.tasks import TrainTask
from landscape_taxonomy.cli.compute import train_command
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import ConfigError, CorruptCell, DataError
from landscape_taxonomy.pipeline import keys as cell_keys
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import running
from landscape_taxonomy.pipeline import train as train_stage
from landscape_taxonomy.report.stages import CONTRACT
from landscape_taxonomy.training.recipe import TrainResult


@pytest.fixture
def fake_metrics(monkeypatch):
    """Metrics in no time (this file tests the store, not the science)."""
    from landscape_taxonomy.metrics import cell as cell_mod

    def quick(*, states, **kw):
        w = float(sum(v.double().sum() for s in states for v in s.values()))
        names = CONTRACT[2:]
        return {"metrics": {**dict.fromkeys(names, w), "n_models": len(states)},
                "per_model": [], "curves": [], "pairs": [], "provenance": {}}
    monkeypatch.setattr(cell_mod, "cell_metrics", quick)


def one_cell(tiny_params, store: Path, **store_opts):
    tiny_params["grid"]["load"]["values"] = [2]
    tiny_params["grid"]["temperature"]["values"] = [64]
    tiny_params["store"] = {"path": str(store), **store_opts}
    return parse_params(tiny_params)


def hidden(folder: Path) -> list[str]:
    """Leftovers next to the cells (the per-cell lock files are meant to stay)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and not p.name.endswith(".lock"))


def files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def seeds(fs: dict) -> dict:
    return {k: v for k, v in fs.items() if k.endswith(".pt")}


def flip_bit(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0x10
    path.write_bytes(bytes(b))


def only_cell(store: Path, kind: str) -> Path:
    (cell,) = [p for p in (store / kind).iterdir() if not p.name.startswith(".")]
    return cell


# -- checksums ---------------------------------------------------------------------------

@pytest.mark.parametrize("damage,reason", [
    (lambda d: flip_bit(d / "a.bin"), "a.bin does not match its checksum"),
    (lambda d: (d / "a.bin").write_bytes((d / "a.bin").read_bytes()[:10]), "a.bin has 10 bytes"),
    (lambda d: (d / MANIFEST).unlink(), f"no {MANIFEST}"),
    (lambda d: (d / "sub" / "b.txt").unlink(), "sub/b.txt is missing"),
    (lambda d: (d / "extra").write_text("?"), "extra is not in"),
])
def test_a_damaged_cell_is_moved_aside_with_one_warning(tmp_path, capsys, damage, reason):
    store = CellStore(tmp_path / "store")
    with store.writer("train", "k1") as tmp:
        (tmp / "a.bin").write_bytes(os.urandom(1000))
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("hello")
    assert json.loads((store.path("train", "k1") / MANIFEST).read_text())["files"].keys() == {
        "a.bin", "sub/b.txt"}
    assert CellStore(store.root).has("train", "k1", "width=1__lr=0.1")
    damage(store.path("train", "k1"))
    capsys.readouterr()
    assert not CellStore(store.root).has("train", "k1", "width=1__lr=0.1")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: store {store.root}: train cell "
                                               "width=1__lr=0.1 (train/k1) is corrupt")
    assert reason in err[0] and err[0].endswith("recomputing it")
    assert not store.path("train", "k1").exists() and hidden(store.root / "train") == []


def test_on_corrupt_error_names_the_folder_and_cell_and_keeps_it(tmp_path):
    store = CellStore(tmp_path / "store", on_corrupt="error")
    with store.writer("metrics", "k2") as tmp:
        (tmp / "result.json").write_text("{}")
    (store.path("metrics", "k2") / "result.json").write_text("{}\n")
    with pytest.raises(CorruptCell) as e:
        CellStore(store.root, on_corrupt="error").has("metrics", "k2", "width=4__batch_size=32")
    msg = str(e.value)
    assert "\n" not in msg and str(store.root) in msg and "width=4__batch_size=32" in msg
    assert "metrics/k2" in msg and "store.on_corrupt" in msg
    assert store.path("metrics", "k2").is_dir()


def test_bit_flip_and_truncation_in_the_store_are_recomputed_not_copied(
        tmp_path, prepared, tiny_params, capsys, fake_metrics):
    p = one_cell(tiny_params, tmp_path / "store")
    store = tmp_path / "store"
    args = ("m.csv", "c.csv", "cells")
    train_stage.train(p, prepared, tmp_path / "models")
    metrics_stage.compute_metrics(p, prepared, tmp_path / "models", *[tmp_path / a for a in args])
    models = files(tmp_path / "models")
    table = (tmp_path / "m.csv").read_text()

    flip_bit(only_cell(store, "train") / "seed_0.pt")
    result = only_cell(store, "metrics") / "result.json"
    result.write_bytes(result.read_bytes()[:-100])
    capsys.readouterr()
    train_stage.train(p, prepared, tmp_path / "models2")
    metrics_stage.compute_metrics(p, prepared, tmp_path / "models2",
                                  *[tmp_path / f"2{a}" for a in args])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning")]
    assert len(err) == 2, err
    assert "train cell width=2__batch_size=64" in err[0] and "seed_0.pt" in err[0]
    assert "metrics cell width=2__batch_size=64" in err[1] and "result.json" in err[1]
    assert seeds(files(tmp_path / "models2")) == seeds(models)  # retrained, bit for bit
    assert (tmp_path / "2m.csv").read_text() == table
    assert hidden(store / "train") == [] and hidden(store / "metrics") == []


def test_corrupt_cell_with_on_corrupt_error_stops_the_stage_before_any_work(
        tmp_path, prepared, tiny_params, monkeypatch, capsys):
    p = one_cell(tiny_params, tmp_path / "store", on_corrupt="error")
    (cell,) = grid.cells(p)
    key = cell_keys.train_key(p, cell, running.load_prepared(str(prepared)))
    store = CellStore(p.store.path)
    with store.writer("train", key) as tmp:
        (tmp / "info.json").write_text("{}")
    (store.path("train", key) / "info.json").write_text("[]")

    def no_training(**kw):
        raise AssertionError("trained although the store is corrupt")
    monkeypatch.setattr(train_stage, "train_cell", no_training)
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({**tiny_params}))
    with pytest.raises(SystemExit) as e:
        train_command(params=params, data=prepared, out=tmp_path / "models")
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: store {store.root}: train cell "
                                                   "width=2__batch_size=64")
    assert not (tmp_path / "models").exists() and store.path("train", key).is_dir()


def test_compute_metrics_refuses_a_models_folder_that_differs_from_its_checksums(
        tmp_path, prepared, tiny_params):
    p = one_cell(tiny_params, tmp_path / "store")
    train_stage.train(p, prepared, tmp_path / "models")
    flip_bit(tmp_path / "models" / "width=2__batch_size=64" / "seed_1.pt")
    with pytest.raises(DataError, match="seed_1.pt does not match its checksum"):
        metrics_stage.compute_metrics(p, prepared, tmp_path / "models", tmp_path / "m.csv",
                                      tmp_path / "c.csv", tmp_path / "cells")
    assert not (tmp_path / "cells").exists()


# -- concurrent writers ------------------------------------------------------------------

def test_two_runs_sharing_a_store_train_a_cell_once(tmp_path, prepared, tiny_params,
                                                   monkeypatch):
    p = one_cell(tiny_params, tmp_path / "store")
    (cell,) = grid.cells(p)
    key = cell_keys.train_key(p, cell, running.load_prepared(str(prepared)))
    task = TrainTask(key=key, cell_id=cell.cell_id, store=str(tmp_path / "store"),
                     on_corrupt="recompute", prepared=str(prepared), device="cpu",
                     vectorize=False, threads=1, kernels=cell_keys.kernels_key(p),
                     cell=cell.train_config(),
                     recipe=asdict(cell_keys.recipe_of(p, cell)))
    calls = []

    def slow_training(**kw):
        calls.append(1)
        time.sleep(0.5)
        return [TrainResult(state={"w": torch.ones(2) * s}, log=[{"epoch": 1}], epochs=1,
                            best_epoch=1) for s in kw["seeds"]]
    monkeypatch.setattr(train_stage, "train_cell", slow_training)
    out, errors = [], []

    def run():  # flock works per open file, so two threads lock like two processes
        try:
            out.append(train_stage.train_task(task))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert out[0]["key"] == out[1]["key"] == key
    assert CellStore(tmp_path / "store").has("train", key)
    assert hidden(tmp_path / "store" / "train") == []


def test_racing_atomic_writers_leave_one_complete_folder_and_no_leftovers(tmp_path):
    target = tmp_path / "cell"
    errors = []

    def write(n):
        try:
            for i in range(15):
                with atomic_dir(target) as tmp:
                    for f in range(3):
                        (tmp / f"f{f}").write_text(f"{n}-{i}")
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell"]
    assert len({p.read_text() for p in target.iterdir()}) == 1  # one writer's whole folder


def test_what_a_killed_writer_left_is_cleared_by_the_next_writer_of_that_cell(tmp_path):
    store = CellStore(tmp_path / "store")
    (store.root / "train" / ".k3.tmp-abc").mkdir(parents=True)
    (store.root / "train" / ".k3.tmp-abc" / "seed_0.pt").write_text("half")
    (store.root / "train" / ".k3.old-def" / "k3").mkdir(parents=True)
    (store.root / "train" / ".other.tmp-x").mkdir()  # another cell's writer: not touched
    with store.claim("train", "k3") as done:
        assert not done
        with store.writer("train", "k3") as tmp:
            (tmp / "info.json").write_text("{}")
    assert hidden(store.root / "train") == [".other.tmp-x"]
    assert store.has("train", "k3")


def test_a_stage_output_left_half_written_by_a_killed_run_is_cleared_by_the_next_write(
        tmp_path):
    # A real writer killed with SIGKILL mid-write, as `kill -9` of a stage would be.
    import signal
    import subprocess
    import sys
    target = tmp_path / "models"
    code = ("import sys, time; from pathlib import Path; from landscape_taxonomy.cells.io import "
            "atomic_dir\nwith atomic_dir(Path(sys.argv[1])) as tmp:\n"
            "    (tmp / 'seed_0.pt').write_text('half'); print('in', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "in"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (left,) = hidden(tmp_path)
    assert left.startswith(".models.tmp-")
    # a live writer's folder (this process) and another host's stay: they may be at work
    import socket
    host = socket.gethostname().replace("-", "_")
    live = tmp_path / f".models.tmp-{host}-{os.getpid()}-live"
    other = tmp_path / ".models.tmp-elsewhere-1-x"
    live.mkdir()
    other.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "seed_0.pt").write_text("whole")
    assert (target / "seed_0.pt").read_text() == "whole"
    assert hidden(tmp_path) == sorted([live.name, other.name])


def test_folders_and_files_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        store = CellStore(tmp_path / "store")
        with store.claim("train", "k4"), store.writer("train", "k4") as tmp:
            (tmp / "info.json").write_text("{}")
        atomic_write_text(tmp_path / "table.csv", "a\n")
        with atomic_dir(tmp_path / "models") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)
    assert mode(store.path("train", "k4")) == 0o775
    assert mode(store.path("train", "k4") / MANIFEST) == 0o664
    assert mode(store.root / "train" / ".k4.lock") == 0o664
    assert mode(tmp_path / "models") == 0o775 and mode(tmp_path / "table.csv") == 0o664


# -- store.path --------------------------------------------------------------------------

@pytest.mark.parametrize("path,what", [
    ("models", "is the stage output"), ("models/cells", "is inside the stage output"),
    ("data", "contains the stage output"), ("reports/cells", "the stage output"),
    (".", "is the repository root"), ("file/sub", "cannot be created or written"),
])
def test_store_path_is_checked_before_any_work(tmp_path, tiny_params, monkeypatch, path, what):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "keep").write_text("a finished cell")
    tiny_params["store"]["path"] = path
    p = parse_params(tiny_params)
    for run in (lambda: train_stage.train(p, Path("data/prepared"), Path("models")),
                lambda: metrics_stage.compute_metrics(p, Path("data/prepared"), Path("models"),
                                                      Path("reports/metrics.csv"),
                                                      Path("reports/curves.csv"),
                                                      Path("reports/cells"))):
        with pytest.raises(ConfigError) as e:
            run()
        msg = str(e.value)
        assert msg.startswith(f"store.path: {path!r} ") and what in msg and "\n" not in msg
        assert "allowed:" in msg
    assert (tmp_path / "models" / "keep").read_text() == "a finished cell"


def test_a_store_outside_the_outputs_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    CellStore(".cells").check([Path("data/prepared"), Path("models")])
    CellStore(tmp_path / "elsewhere" / "store").check([Path("models")])
    assert (tmp_path / ".cells").is_dir() and (tmp_path / "elsewhere" / "store").is_dir()
