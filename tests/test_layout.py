"""The package's shape: no import runs in a circle inside ``ssgan``, no private name is imported
across modules (that the layout changed no behaviour: ``tests/test_golden_checkpoint.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    pkg = ROOT / "ssgan"
    out = {}
    for p in sorted(pkg.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(path: Path, name: str, is_pkg: bool) -> list[tuple[str, list[str], bool]]:
    """(module imported, names taken from it, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if is_pkg else name.split(".")[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.append((base, [a.name for a in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], id(node) in top) for a in node.names]
    return found


def test_no_import_cycle_inside_ssgan():
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for base, names, _ in _imports(p, m, p.name == "__init__.py"):
            # ``from pkg import sub`` depends on the submodule; ``from pkg import name`` on pkg
            targets = {f"{base}.{n}" if f"{base}.{n}" in mods else base for n in names} or {base}
            graph[m] |= {t for t in targets if t in mods and t != m}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_imported_across_modules():
    mods = _modules()
    bad = [f"{p.relative_to(ROOT)}: {n} from {base}"
           for m, p in mods.items() for base, names, _ in _imports(p, m, p.name == "__init__.py")
           if base.startswith("ssgan") for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_subpackages_by_concern():
    """The tree says where things live: one subpackage per concern, each with its docstring."""
    for sub in ("model", "data", "train", "edit", "metrics", "kernels"):
        init = ROOT / "ssgan" / sub / "__init__.py"
        assert init.is_file(), init
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"
