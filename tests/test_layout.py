"""The package's shape: every import points down the layers of :data:`LAYERS` (no folder
imports upward, no folder cycle), no import runs in a circle inside ``ssgan``, no private name is
imported across modules (that the layout changed no behaviour: ``tests/test_golden_checkpoint.py``)."""

from __future__ import annotations

import ast
import re
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


def _module_graph() -> dict[str, set[str]]:
    """Module → the ``ssgan`` modules it imports (at module level or inside a function)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for base, names, _ in _imports(p, m, p.name == "__init__.py"):
            # ``from pkg import sub`` depends on the submodule; ``from pkg import name`` on pkg
            targets = {f"{base}.{n}" if f"{base}.{n}" in mods else base for n in names} or {base}
            graph[m] |= {t for t in targets if t in mods and t != m}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (its nodes, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_inside_ssgan():
    cycle = _find_cycle(_module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


#: Every folder and top-level module of ``ssgan/`` → its layer. A module imports only from the
#: layers below its own (and from its own folder); two units of one layer are peers and import
#: neither way. Each folder's ``__init__`` docstring says what it may import (checked below).
LAYERS: dict[str, int] = {
    "kernels": 0,  # the hot ops: Triton kernels and their reference maths
    "distributed": 0,  # process-group helpers (torch.distributed): under metrics and train
    "jsonl": 0,  # JSON-lines logs: under train and edit (the encoder's log)
    "model": 1,  # the networks, on the kernels
    "classes": 2,  # class names and colours (text and JSON, no drawing): read by checkpoints and data
    "checkpoint": 3,  # the files: a checkpoint knows its config (model) and its classes
    "provenance": 3,  # what marks an output as synthetic (XMP record, watermark, detection, C2PA, video
    #                  files; numpy, PIL): called by every writer above; a peer of checkpoint (callers
    #                  pass the digest)
    "visualize": 4,  # drawing (palette, masks, grids, PNG): above checkpoint and classes, so that
    #                  file-format code never pulls in drawing code
    "cliargs": 4,  # the parser class and the common arguments (they load checkpoints): under
    #               every *commands module, the data tools' included
    "data": 5,  # datasets and the data tools (whose inspect sheet draws: above visualize)
    "metrics": 6,  # quality metrics of a generator or a checkpoint, over data
    "train": 7,  # training: uses the metrics during a run
    "edit": 7,  # editing, inversion, the encoder and the edit locality: use the metrics' IoU
    "serve": 8,  # the browser editor, on edit
    "checkpoint_commands": 8,  # ``ssgan info`` / ``convert``: a command module like serve's
    "provenance_commands": 8,  # ``ssgan detect``: on cliargs, so above the provenance folder it runs
    "cli": 9,  # the ``ssgan`` command: registers every command module
    "cli_flags": 9,  # the one-meaning-per-flag check and docs/cli.md: walks the whole ``ssgan`` parser
    "ssgan": 9,  # the package's ``__init__``: the public names for users; no module imports it
    "__main__": 10,  # every ``python -m ssgan.<folder>`` entry point (it lives in its folder only
    #                 because ``-m`` needs it there): a front door that may run any command
}


def _unit(module: str) -> str:
    """The :data:`LAYERS` key of a module: its folder under ``ssgan/`` or its own name at the top,
    ``__main__`` for an entry point, ``ssgan`` for the package's ``__init__``."""
    parts = module.split(".")
    return "__main__" if parts[-1] == "__main__" else parts[1] if len(parts) > 1 else parts[0]


def _unit_graph() -> dict[str, dict[str, set[str]]]:
    """Unit → unit it imports → the importing modules."""
    modules = _module_graph()
    graph: dict[str, dict[str, set[str]]] = {_unit(m): {} for m in modules}
    for m, targets in modules.items():
        for t in targets:
            if _unit(t) != _unit(m):
                graph[_unit(m)].setdefault(_unit(t), set()).add(m)
    return graph


def test_every_folder_and_module_has_a_layer():
    units = set(_unit_graph())
    assert not units - set(LAYERS), f"add these to LAYERS (with why): {sorted(units - set(LAYERS))}"
    assert not set(LAYERS) - units, f"LAYERS names what ssgan/ no longer has: {sorted(set(LAYERS) - units)}"


def test_imports_point_down_the_layers():
    graph = _unit_graph()
    bad = [f"{', '.join(sorted(mods))} (layer {LAYERS.get(u)}) imports {t} (layer {LAYERS.get(t)})"
           for u, targets in graph.items() for t, mods in targets.items()
           if LAYERS.get(t, 10**9) >= LAYERS.get(u, -1)]
    assert not bad, "imports that do not point to a lower layer:\n" + "\n".join(bad)


def test_no_folder_cycle():
    cycle = _find_cycle({u: set(targets) for u, targets in _unit_graph().items()})
    assert cycle is None, "folder-level import cycle: " + " -> ".join(cycle)


def test_folder_docstrings_state_their_layer():
    """Each ``ssgan/<folder>/__init__.py`` says ``Layer N of ``LAYERS`` (tests/test_layout.py): may
    import a, b, c.`` with its rank and exactly the units below it (``nothing of ssgan`` at the
    bottom)."""
    pattern = re.compile(r"Layer (\d+) of ``LAYERS`` \(tests/test_layout\.py\): may import "
                         r"(nothing of ssgan|[a-z_]+(?:, [a-z_]+)*)\.")
    for init in sorted((ROOT / "ssgan").glob("*/__init__.py")):
        folder = init.parent.name
        below = {u for u, rank in LAYERS.items() if rank < LAYERS[folder]}
        doc = " ".join((ast.get_docstring(ast.parse(init.read_text())) or "").split())
        found = pattern.search(doc)
        assert found, f"{init}: its docstring lacks '{pattern.pattern}'"
        listed = set() if found[2] == "nothing of ssgan" else set(found[2].split(", "))
        assert (int(found[1]), listed) == (LAYERS[folder], below), (
            f"{init} says layer {found[1]} importing {sorted(listed)}; LAYERS says layer {LAYERS[folder]} "
            f"importing {sorted(below)}")


def test_no_private_name_imported_across_modules():
    mods = _modules()
    bad = [f"{p.relative_to(ROOT)}: {n} from {base}"
           for m, p in mods.items() for base, names, _ in _imports(p, m, p.name == "__init__.py")
           if base.startswith("ssgan") for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_subpackages_by_concern():
    """The tree says where things live: one subpackage per concern, each with its docstring."""
    for sub in ("model", "data", "checkpoint", "train", "edit", "metrics", "kernels", "serve"):
        init = ROOT / "ssgan" / sub / "__init__.py"
        assert init.is_file(), init
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"


def test_no_function_over_120_lines():
    """A function that outgrows a screen or two is split by what it does (the issue-21 rule)."""
    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in sorted((ROOT / "ssgan").rglob("*.py")) for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > 120]
    assert not long, "functions over 120 lines:\n" + "\n".join(long)
