"""Reading a metrics or phases table, ours or another study's, with one-line errors.

A table from elsewhere may name its axes otherwise (`width`, `batch_size`): `load_col` and
`temperature_col` say which columns they are. Every problem is a `TableError` naming the
file, the column and the row (1-based data rows, as a spreadsheet shows them after the
header): a ragged row, a missing or non-numeric column, an empty axis value, two rows for
one cell. Nothing is guessed, so a column never silently shifts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..errors import TableError

AXES = ("load", "temperature")


def check_out_file(path: Path | None, option: str = "--out") -> None:
    """Before any work: an output file's path must not be a folder, nor under a file."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise TableError(f"{option}: {path} is a folder; give the path of a file to write")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise TableError(f"{option}: {parent} is a file, so {path} cannot be written")


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Before any work: an output folder's path must not be a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise TableError(f"{option}: {p} is a file; give a folder for the figures")


def read_table(path: Path, *, numeric=(), load_col: str | None = None,
               temperature_col: str | None = None, require=(),
               unique: bool = True) -> pd.DataFrame:
    """The CSV at `path`, its axis columns named load/temperature, `numeric` columns
    checked to hold numbers (empty cells are NaN), `require`d columns present, and (when
    `unique`) one row per (load, temperature) cell."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"table {path}: file does not exist")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise TableError(f"table {path}: not a text (UTF-8) CSV file (byte {e.start} cannot "
                         "be read)") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise TableError(f"table {path}: empty file (no header)")
    header = rows[0]
    for i, row in enumerate(rows[1:], start=1):
        if row and len(row) != len(header):
            raise TableError(f"table {path}: row {i} has {len(row)} fields, the header "
                             f"{len(header)}")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise TableError(f"table {path}: column {dupes[0]!r} appears more than once")
    if not any(rows[1:]):
        raise TableError(f"table {path}: no data rows (header only)")
    df = pd.read_csv(path, index_col=False, keep_default_na=True)

    for axis, col in (("load", load_col), ("temperature", temperature_col)):
        if col is None or (col not in df.columns and axis in df.columns):
            continue  # e.g. our own phases.csv, which names its axes load/temperature
        if col not in df.columns:
            raise TableError(f"table {path}: --{axis}-col {col!r} is not a column "
                             f"(columns: {', '.join(df.columns)})")
        if axis in df.columns and col != axis:
            df = df.drop(columns=[axis])
        df = df.rename(columns={col: axis})
        if f"{axis}_param" not in df.columns:
            df[f"{axis}_param"] = col

    missing = [c for c in require if c not in df.columns]
    if missing:
        hint = (" (name the axis columns with --load-col/--temperature-col)"
                if set(missing) & set(AXES) else "")
        raise TableError(f"table {path}: missing column(s) {', '.join(missing)}{hint}")
    for col in numeric:
        if col in df.columns:
            df[col] = _numbers(df[col], path, col)
    for axis in AXES:
        if axis in df.columns:
            bad = df.index[df[axis].isna()]
            if len(bad):
                raise TableError(f"table {path}: row {bad[0] + 1}: {axis} is empty or NaN")
    if unique and all(a in df.columns for a in AXES):
        dup = df.duplicated(subset=list(AXES), keep=False)
        if dup.any():
            rows_ = [int(i) + 1 for i in df.index[dup]]
            r = df.loc[df.index[dup][0]]
            raise TableError(f"table {path}: rows {rows_[0]} and {rows_[1]} are the same cell "
                             f"(load={r['load']:g}, temperature={r['temperature']:g})")
    return df


def _numbers(col: pd.Series, path: Path, name: str) -> pd.Series:
    out = pd.to_numeric(col, errors="coerce")
    bad = out.isna() & col.notna() & (col.astype(str).str.strip() != "")
    if bad.any():
        i = bad.idxmax()
        raise TableError(f"table {path}: column {name!r} row {i + 1}: {col[i]!r} is not a "
                         f"number")
    return out.astype(float)
