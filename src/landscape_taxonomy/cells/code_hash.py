"""Which library code a stage or a grid cell can run, read off the source with `ast`.

Two things must follow the code exactly, or results go stale without anyone noticing: the
`deps:` of each stage in dvc.yaml (DVC reruns a stage when one changes) and the code hash in
each cell's key (grid.code_hash: the cell store recomputes a cell when it changes). Both come
from here, from one analysis, so they cannot drift from the imports:

- Reach is by name, from entry points such as `pipeline.train:train_task` or a stage script: a
  function or class reaches every package function, class or module-level name its body
  (decorators, defaults and nested code included) names, directly or through an import
  binding (at module level or inside the function, absolute or relative, re-exports
  followed), and so on transitively. A class is reached whole, every method with it. A
  module named bare (`executor` passed as a value, say) counts whole.
- Importing a module runs only imports, definitions and assignments (tests/test_deps.py
  holds the package to that), so a module that is imported but none of whose names is used
  cannot change a number, and is left out.
- A stage's `deps:` are its script and the files of every module it reaches
  (`python tools/dvc_deps.py dvc-deps --write` rewrites them; the test fails when they
  differ). A cell key hashes the source of every function and class its worker
  reaches, less the modules grid.py lists as unable to change a number.

Why not depend on the whole package folder: every stage would then rerun on any edit (a
plot's colour would rerun training and every metric), and each cell key would change with
it. Per function rather than per module because a module may serve several stages (cli
modules hold several commands, report/stages.py three stages' drivers): per module, a stage
would reach code it never runs.

What a name-based reach cannot see: code run through `getattr` on a computed name, or
methods of an object whose class no reached code names. The package does neither.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "landscape_taxonomy"


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/landscape_taxonomy


# An entry point, a reached name: (module, name), module package-relative ("pipeline.train",
# "metrics.cell", "" for the package itself); name None for the whole module.
Ref = tuple[str, "str | None"]


@dataclass
class Module:
    name: str
    path: Path
    source: str
    tree: ast.Module
    is_package: bool
    symbols: dict[str, list[ast.stmt]]  # top-level def, class or assignment, by bound name
    imports: dict[str, Ref]  # top-level import bindings: name -> what it is bound to


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _bound_names(stmt: ast.stmt) -> list[str]:
    """The names a top-level def, class or assignment binds (`x.y = ...` binds none)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    todo = list(stmt.targets) if isinstance(stmt, ast.Assign) else [stmt.target]
    names = []
    while todo:
        t = todo.pop(0)
        if isinstance(t, ast.Name):
            names.append(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            todo += t.elts
        elif isinstance(t, ast.Starred):
            todo.append(t.value)
    return names


class Package:
    """Every module of the package under `root`, parsed once."""

    def __init__(self, root: Path = PACKAGE_DIR):
        self.root = Path(root)
        self.modules: dict[str, Module] = {}
        self.unresolved: set[Ref] = set()  # names reach found nowhere (counted whole)
        for path in sorted(self.root.rglob("*.py")):
            rel = path.relative_to(self.root).with_suffix("")
            parts = list(rel.parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            source = path.read_text()
            name = ".".join(parts)
            self.modules[name] = Module(name, path, source, ast.parse(source, str(path)),
                                        is_package, {}, {})
        for m in self.modules.values():
            for stmt in m.tree.body:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    m.imports.update(self.bindings(m, stmt))
                elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                       ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    for n in _bound_names(stmt):
                        m.symbols.setdefault(n, []).append(stmt)

    # -- imports ---------------------------------------------------------------------------

    def _absolute(self, m: Module, module: str | None, level: int) -> str | None:
        """The package-relative name an import refers to, or None outside the package."""
        if level == 0:
            if module == PACKAGE:
                return ""
            if module and module.startswith(PACKAGE + "."):
                return module[len(PACKAGE) + 1:]
            return None
        base = m.name.split(".") if m.name else []
        if not m.is_package:
            base = base[:-1]
        drop = level - 1
        if drop > len(base):
            raise ImportError(f"{m.path}: relative import beyond the package")
        base = base[:len(base) - drop]
        return _join(".".join(base), module)

    def bindings(self, m: Module, stmt: ast.Import | ast.ImportFrom) -> list[tuple[str, Ref]]:
        """The names an import statement binds in `m`, each with what it refers to."""
        out = []
        if isinstance(stmt, ast.ImportFrom):
            base = self._absolute(m, stmt.module, stmt.level)
            if base is None:
                return []
            for a in stmt.names:
                if a.name == "*":
                    raise ValueError(f"{m.path}:{stmt.lineno}: star import (not analysable)")
                sub = _join(base, a.name)
                ref = (sub, None) if sub in self.modules else (base, a.name)
                out.append((a.asname or a.name, ref))
        else:
            for a in stmt.names:
                target = self._absolute(m, a.name, 0)
                if target is None:
                    continue
                # `import pkg.mod` binds pkg; `import pkg.mod as x` binds the module itself
                out.append((a.asname, (target, None)) if a.asname else (PACKAGE, ("", None)))
        return out

    def imported_modules(self, m: Module, stmt: ast.Import | ast.ImportFrom) -> set[str]:
        """The package modules an import statement runs: each target and the packages
        above it."""
        if isinstance(stmt, ast.ImportFrom):
            base = self._absolute(m, stmt.module, stmt.level)
            if base is None:
                return set()
            targets = [base] + [_join(base, a.name) for a in stmt.names]
        else:
            targets = [t for a in stmt.names if (t := self._absolute(m, a.name, 0)) is not None]
        out = set()
        for t in targets:
            parts = t.split(".") if t else []
            out.update(".".join(parts[:i]) for i in range(len(parts) + 1))
        return out & set(self.modules)

    def import_graph(self, module_level_only: bool = True) -> dict[str, set[str]]:
        """module -> the package modules its import statements run (packages above a module
        included; a module's own package left out). `module_level_only`: only the imports
        that run when the module is imported, not those inside functions."""
        graph = {}
        for m in self.modules.values():
            stmts = _module_level(m.tree) if module_level_only else ast.walk(m.tree)
            deps = set()
            for stmt in stmts:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    deps |= self.imported_modules(m, stmt)
            parents = {".".join(m.name.split(".")[:i]) for i in range(m.name.count(".") + 1)}
            graph[m.name] = deps - parents - {m.name}
        return graph

    # -- reach -----------------------------------------------------------------------------

    def _refs(self, m: Module, node: ast.AST) -> set[Ref]:
        """What the code of `node` (in module m) names in the package."""
        local = {}
        for n in ast.walk(node):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                local.update(self.bindings(m, n))
        refs: set[Ref] = set()

        def resolve(name: str, attrs: list[str]):
            if name in local:
                ref = local[name]
            elif name in m.symbols:
                refs.add((m.name, name))
                return
            elif name in m.imports:
                ref = m.imports[name]
            else:
                return  # a builtin, a parameter or a local variable
            mod, attr = ref
            if attr is not None:
                refs.add(ref)
                return
            for a in attrs:  # a module: follow attributes into submodules, then one name
                if _join(mod, a) in self.modules:
                    mod = _join(mod, a)
                    continue
                refs.add((mod, a))
                return
            refs.add((mod, None))

        class Visitor(ast.NodeVisitor):
            def visit_Attribute(self, n):
                attrs = []
                cur = n
                while isinstance(cur, ast.Attribute):
                    attrs.append(cur.attr)
                    cur = cur.value
                if isinstance(cur, ast.Name):
                    resolve(cur.id, attrs[::-1])
                else:
                    self.visit(cur)

            def visit_Name(self, n):
                resolve(n.id, [])

        Visitor().visit(node)
        return refs

    def reach(self, roots: Iterable[Ref]) -> set[Ref]:
        """Every (module, name) the roots reach; (module, None) where a module counts whole."""
        seen: set[Ref] = set()
        todo = list(roots)
        while todo:
            ref = todo.pop()
            if ref in seen:
                continue
            seen.add(ref)
            mod, name = ref
            if mod not in self.modules:
                raise KeyError(f"no module {_join(PACKAGE, mod)}")
            m = self.modules[mod]
            if name is None:
                todo += [(mod, s) for s in [*m.symbols, *m.imports]]
            elif name in m.symbols:
                for stmt in m.symbols[name]:
                    todo += self._refs(m, stmt)
            elif name in m.imports:  # a re-export
                todo.append(m.imports[name])
            elif _join(mod, name) in self.modules:
                todo.append((_join(mod, name), None))
            else:  # not a name this analysis sees bound: count the module whole
                self.unresolved.add(ref)
                todo.append((mod, None))
        return seen

    def files(self, roots: Iterable[Ref]) -> list[Path]:
        """The source files of every module with a reached name."""
        mods = {mod for mod, name in self.reach(roots) if name is not None}
        return sorted(self.modules[mod].path for mod in mods)

    def code_hash(self, roots: Iterable[Ref], exclude: Iterable[str] = ()) -> str:
        """Hash of the source of every top-level function, class and assignment the roots
        reach, outside the modules (and their submodules) in `exclude`."""
        exclude = tuple(exclude)
        h = hashlib.sha256()
        for mod, name in sorted(self.reach(roots), key=lambda r: (r[0], r[1] or "")):
            if name is None or any(mod == e or mod.startswith(e + ".") for e in exclude):
                continue
            m = self.modules[mod]
            for stmt in m.symbols.get(name, []):
                h.update(f"{mod}:{name}\0".encode())
                h.update(_normalized(stmt).encode() + b"\0")
        return h.hexdigest()[:12]


def _module_level(tree: ast.Module):
    """The statements that run when a module is imported (not inside functions/classes)."""
    todo = list(tree.body)
    while todo:
        stmt = todo.pop(0)
        yield stmt
        if isinstance(stmt, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo += getattr(stmt, field, [])
        elif isinstance(stmt, ast.ExceptHandler):
            todo += stmt.body


def _normalized(stmt: ast.stmt) -> str:
    """What a statement computes, for the code hash: its syntax tree without docstrings
    (comments and layout are not in it), so that an edit to either keeps every key while
    a changed token changes it."""
    import copy

    tree = copy.deepcopy(stmt)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def parse_entry(entry: str) -> Ref:
    """'pipeline.train:train_task' -> ('pipeline.train', 'train_task'); 'metrics.cell' -> the
    whole module."""
    mod, _, name = entry.partition(":")
    mod = mod.removeprefix(PACKAGE).lstrip(".")
    return mod, name or None


@cache
def package(root: Path = PACKAGE_DIR) -> Package:
    return Package(root)
