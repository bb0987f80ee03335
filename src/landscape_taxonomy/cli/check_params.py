"""`landscape-taxonomy check-params`: a params file against the schema, the keys dvc.yaml's
stages declare, and the pre-flight checks (pipeline/check_params.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config.loading import load_params, read_yaml
from ..errors import ConfigError
from .common import one_line_errors


def declared_params(dvc_yaml: Path) -> list[tuple[str, str]]:
    """(stage, dotted key) for each key of params.yaml that dvc.yaml's stages declare under
    `params:`, in the file's order: the plain entries and those under a `params.yaml:`
    mapping (a mapping naming another file declares that file's keys, not these)."""
    doc = read_yaml(dvc_yaml) or {}
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        return []
    out = []
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            continue
        body = stage.get("do") if isinstance(stage.get("do"), dict) else stage  # foreach
        for entry in body.get("params") or []:
            if isinstance(entry, str):
                out.append((name, entry))
            elif isinstance(entry, dict):
                out += [(name, k) for k in entry.get("params.yaml") or [] if isinstance(k, str)]
    return out


def has_key(doc, dotted: str) -> bool:
    """Whether a params file's mapping holds the dotted key (a section counts if present),
    as DVC looks a declared key up: a stage whose key is missing does not run."""
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _dvc_yaml_for(params: Path) -> Path | None:
    """The dvc.yaml beside the params file, else the one in the working directory."""
    for folder in (Path(params).resolve().parent, Path.cwd()):
        if (folder / "dvc.yaml").is_file():
            return folder / "dvc.yaml"
    return None


STAMP = "params.yaml passed the schema and the pre-flight checks (landscape-taxonomy " \
        "check-params)\n"


@one_line_errors
def check_params_command(params: Path = typer.Argument(Path("params.yaml")),
                         stamp: Path = typer.Option(None, help=(
                             "write this file once every check passed: the pipeline's first "
                             "stage, which the others depend on, so that a bad params.yaml "
                             "stops dvc repro before any of them runs"))):
    """Validate a params file and print the grid it describes. With a dvc.yaml beside it
    (or in the working directory), also check that the file has every key its stages
    declare: DVC stops at a stage whose declared key is missing, though the schema would
    take the default. Then what can be known to fail before training (preflight.py)."""
    from ..cells import grid
    from ..pipeline import check_params as preflight
    p = load_params(params)
    found = preflight.errors(p)
    if found:
        raise ConfigError(found[0])
    checked = ""
    dvc_yaml = _dvc_yaml_for(params)
    if dvc_yaml is not None:
        doc = read_yaml(params) or {}
        declared = declared_params(dvc_yaml)
        missing = {}
        for stage, key in declared:
            if not has_key(doc, key):
                missing.setdefault(key, stage)
        if missing:
            (key, stage), *others = missing.items()
            more = f"; also missing: {', '.join(k for k, _ in others)}" if others else ""
            raise ConfigError(f"{key}: missing from {params}; stage {stage} of {dvc_yaml} "
                              f"declares it, so dvc repro stops there{more}")
        checked = f"; has every key the stages of {dvc_yaml} declare"
    for line in preflight.warnings(p):  # once every error is ruled out
        typer.echo(line, err=True)
    n = len(grid.cells(p))
    if stamp is not None:  # the same bytes every time: the stages after it do not rerun
        from ..cells.io import atomic_write_text
        atomic_write_text(stamp, STAMP)
    typer.echo(f"{params}: ok; {n} cells x {p.grid.seeds} seeds "
               f"({p.grid.load.param} x {p.grid.temperature.param}){checked}")
