"""A failed cell: its traceback kept in the store's log, one line naming it, and bad input
(exit 2, `error: ...`) told apart from a failure of our code (exit 1)."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import write_params
from landscape_taxonomy.cells.executor import settings as executor_settings
from landscape_taxonomy.cli.compute import train_command
from landscape_taxonomy.config.loading import parse_params
from landscape_taxonomy.errors import DataError, ExecutorError
from landscape_taxonomy.pipeline import metrics as metrics_stage
from landscape_taxonomy.pipeline import prepare as prepare_stage
from landscape_taxonomy.pipeline import train as train_stage

CELLS = ["width=1__batch_size=32", "width=1__batch_size=128", "width=4__batch_size=32",
         "width=4__batch_size=128"]


@pytest.fixture
def setup(tmp_path, tiny_params):
    tiny_params["store"]["path"] = str(tmp_path / "store")
    params = write_params(tmp_path / "params.yaml", tiny_params)
    prepare_stage.prepare(parse_params(tiny_params), tmp_path / "prepared")
    return tmp_path, params


def train(tmp_path, params, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        train_command(params=params, data=tmp_path / "prepared", out=tmp_path / "models")
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_bug_in_a_cell_is_an_internal_error_with_its_traceback_logged(setup, monkeypatch,
                                                                        capsys):
    tmp_path, params = setup

    def broken_train_cell(**kw):
        raise ValueError("operands could not be broadcast together")  # our bug, not input

    monkeypatch.setattr(train_stage, "train_cell", broken_train_cell)
    code, err = train(tmp_path, params, capsys)
    logs = tmp_path / "store" / "logs" / "train"
    assert code == 1
    assert err[-1] == (f"internal error in cell {CELLS[0]}: ValueError: operands could not be "
                       f"broadcast together; traceback in {logs / CELLS[0]}.log "
                       f"(3 more of 4 cells failed; logs in {logs})")
    for cell in CELLS:
        text = (logs / f"{cell}.log").read_text()
        assert text.startswith(f"{cell} key=") and "FAILED: ValueError" in text
        assert "Traceback (most recent call last)" in text and "broken_train_cell" in text


def test_bad_input_met_in_a_cell_is_a_user_error_and_a_bug_outranks_it(setup, monkeypatch,
                                                                        capsys):
    tmp_path, params = setup
    bug_in = set()

    def train_cell(**kw):
        if kw["width"] == 4 and kw["recipe"].batch_size in bug_in:
            raise RuntimeError("CUDA error: an illegal memory access\nwith a second line")
        raise DataError("noise=0.3: no labels prepared at that level; rerun prepare")

    monkeypatch.setattr(train_stage, "train_cell", train_cell)
    code, err = train(tmp_path, params, capsys)
    logs = tmp_path / "store" / "logs" / "train"
    assert code == 2
    assert err[-1] == (f"error: train-grid: cell {CELLS[0]}: noise=0.3: no labels prepared at "
                       f"that level; rerun prepare (3 more of 4 cells failed; logs in {logs})")

    bug_in.add(128)
    code, err = train(tmp_path, params, capsys)
    assert code == 1
    assert err[-1].startswith(f"internal error in cell {CELLS[3]}: RuntimeError: CUDA error: "
                              f"an illegal memory access; traceback in {logs / CELLS[3]}.log")


def test_a_full_disk_says_so_and_where(setup, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    tmp_path, params = setup

    def train_cell(**kw):  # what torch.save says when the disk fills
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(train_stage, "train_cell", train_cell)
    code, err = train(tmp_path, params, capsys)
    assert code == 1 and err[-1].startswith("internal error in cell")  # space left: a bug
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9, 10 ** 6))
    code, err = train(tmp_path, params, capsys)
    store = tmp_path / "store"
    assert code == 2
    assert err[-1].startswith(f"error: train-grid: cell {CELLS[0]}: no space left on device "
                              f"under {store} (1.0 MB free): free some space, or point "
                              "store.path at another file system")


def test_one_failed_cell_among_finished_ones(setup, monkeypatch, capsys):
    tmp_path, params = setup
    real = train_stage.train_cell

    def train_cell(**kw):
        if kw["width"] == 1 and kw["recipe"].batch_size == 128:
            raise DataError("subset too small")
        # one epoch is enough: only the bookkeeping is under test
        return real(**{**kw, "recipe": dataclasses.replace(kw["recipe"], max_epochs=1)})

    monkeypatch.setattr(train_stage, "train_cell", train_cell)
    code, err = train(tmp_path, params, capsys)
    log = tmp_path / "store" / "logs" / "train" / f"{CELLS[1]}.log"
    assert code == 2
    assert err[-1] == f"error: train-grid: cell {CELLS[1]}: subset too small (log: {log})"
    kept = [d for d in (tmp_path / "store" / "train").iterdir() if not d.name.startswith(".")]
    assert len(kept) == 3  # the others are kept (hidden entries are the cells' locks)


def test_executor_settings_are_checked_before_anything_is_read(tmp_path, tiny_params,
                                                               monkeypatch):
    monkeypatch.setattr(executor_settings, "_has_ray", lambda: False)
    tiny_params["executor"] = {**tiny_params["executor"], "kind": "ray"}
    p = parse_params(tiny_params)
    with pytest.raises(ExecutorError, match="^executor.kind: ray needs Ray"):
        train_stage.train(p, tmp_path / "no-prepared-data-here", tmp_path / "models")
    with pytest.raises(ExecutorError, match="^executor.kind: ray needs Ray"):
        metrics_stage.compute_metrics(p, tmp_path / "none", tmp_path / "none", tmp_path / "m.csv",
                                      tmp_path / "c.csv", tmp_path / "cells")
