"""Each stage's `deps:` in dvc.yaml, from the imports of its script (a developer tool, not a
stage dependency: editing it reruns nothing).

    python tools/dvc_deps.py dvc-deps            print each stage's deps
    python tools/dvc_deps.py dvc-deps --write    rewrite the deps: lists in place
    python tools/dvc_deps.py dvc-deps --check    exit 1 if dvc.yaml differs
    python tools/dvc_deps.py reach pipeline.train:train_task   what an entry point reaches

A stage's code deps are its script and the files of every package module it reaches
(cells/code_hash.py); a folder all of whose modules it reaches is listed as the folder.
tests/test_deps.py fails when dvc.yaml differs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from landscape_taxonomy.cells.code_hash import PACKAGE, Module, Ref, _join, package, parse_entry


def script_roots(script: Path) -> set[Ref]:
    """What a stage script takes from the package: every name it imports from it."""
    tree = ast.parse(Path(script).read_text(), str(script))
    pkg = package()
    stub = Module("__script__", Path(script), "", tree, False, {}, {})
    roots = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.ImportFrom) and stmt.level:
            raise ValueError(f"{script}: a stage script must import the package absolutely")
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for name, ref in pkg.bindings(stub, stmt):
                if isinstance(stmt, ast.Import) and name == PACKAGE:  # import pkg.mod
                    ref = (pkg._absolute(stub, stmt.names[0].name, 0) or "", None)
                roots.add(ref)
    return roots


def stage_scripts(dvc_yaml: Path) -> dict[str, Path]:
    """stage name -> the script its cmd runs (`python stages/<name>.py ...`)."""
    import yaml

    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        scripts = [w for w in words if w.endswith(".py")]
        if words[0] != "python" or len(scripts) != 1:
            raise ValueError(f"dvc.yaml: stage {name}: cmd must be `python <script>.py ...`")
        out[name] = Path(dvc_yaml).parent / scripts[0]
    return out


def is_code(dep: str) -> bool:
    return dep.startswith(("stages/", "src/"))


def folded(files: list[Path], root: Path) -> list[Path]:
    """The files, with each folder under `root` all of whose modules are among them (its
    __init__.py and subfolders included) given as the folder: exact, as DVC hashes a folder
    (.dvcignore keeps __pycache__ out of it)."""
    reached = set(files)
    out, done = [], set()
    for f in sorted(files):
        if f in done:
            continue
        whole = None
        for folder in reversed(f.relative_to(root).parents[:-1]):  # the outermost first
            inside = set((root / folder).rglob("*.py"))
            if inside <= reached:
                whole = root / folder
                done |= inside
                break
        out.append(whole or f)
    return sorted(dict.fromkeys(out), key=lambda p: p.as_posix())


def stage_code_deps(script: Path, repo: Path) -> list[str]:
    """A stage's code deps: its script, then every package file or whole folder it reaches
    (repo-relative)."""
    pkg = package()
    files = folded(pkg.files(script_roots(script)), pkg.root)
    return [Path(script).relative_to(repo).as_posix()] + [
        f.relative_to(repo).as_posix() for f in files]


def expected_deps(dvc_yaml: Path) -> dict[str, list[str]]:
    """Each stage's deps as they should be: code deps from the imports, the rest (data)
    as dvc.yaml has them, after the script."""
    import yaml

    repo = Path(dvc_yaml).resolve().parent
    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    out = {}
    for name, script in stage_scripts(dvc_yaml).items():
        code = stage_code_deps(script.resolve(), repo)
        data = [d for d in stages[name].get("deps", []) if not is_code(d)]
        out[name] = code[:1] + data + code[1:]
    return out


def rewrite_deps(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's `deps:` list replaced, every other line kept."""
    lines = text.splitlines(keepends=True)
    out, stage, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped and not stripped.startswith("#") and indent <= 2:
            stage = stripped[:-1] if indent == 2 and stripped.endswith(":") else None
        if stage in deps and stripped == "deps:":
            out.append(line)
            i += 1
            item_indent = None
            while i < len(lines):  # replace the old list; comments above its items stay
                s = lines[i].strip()
                ind = len(lines[i]) - len(lines[i].lstrip())
                if s.startswith("- ") and (item_indent is None or ind == item_indent):
                    item_indent = ind
                elif s.startswith("#") and ind > indent:
                    if item_indent is None:
                        out.append(lines[i])
                else:
                    break
                i += 1
            pad = " " * (item_indent if item_indent is not None else indent + 2)
            out += [f"{pad}- {d}\n" for d in deps[stage]]
            continue
        out.append(line)
        i += 1
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/dvc_deps.py",
                                 description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dvc-deps", help="each stage's deps as the imports give them")
    d.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    how = d.add_mutually_exclusive_group()
    how.add_argument("--write", action="store_true", help="rewrite the deps: lists in place")
    how.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs")
    r = sub.add_parser("reach", help="the files and names entry points reach")
    r.add_argument("entries", nargs="+", help="module:name, module, or a stage script")
    args = ap.parse_args(argv)

    if args.cmd == "reach":
        roots = set()
        for e in args.entries:
            roots |= script_roots(Path(e)) if e.endswith(".py") else {parse_entry(e)}
        pkg = package()
        for f in pkg.files(roots):
            print(f.relative_to(pkg.root).as_posix())
        for mod, name in sorted(pkg.reach(roots), key=lambda r: (r[0], r[1] or "")):
            print(f"  {_join(PACKAGE, mod)}:{name or '*'}")
        return 0

    text = args.dvc_yaml.read_text()
    want = expected_deps(args.dvc_yaml)
    new = rewrite_deps(text, want)
    if args.write:
        if new != text:
            args.dvc_yaml.write_text(new)
        print(f"{args.dvc_yaml}: deps {'rewritten' if new != text else 'already current'}")
        return 0
    if args.check:
        if new != text:
            print(f"{args.dvc_yaml}: deps are stale; run python tools/dvc_deps.py "
                  "dvc-deps --write", file=sys.stderr)
            return 1
        return 0
    for stage, deps in want.items():
        print(f"{stage}:")
        print("".join(f"  - {d}\n" for d in deps), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
