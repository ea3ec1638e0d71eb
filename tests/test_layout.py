"""The package's shape: the layout redesign changed no behaviour (a short run writes the same
checkpoint as before it), no import runs in a circle inside ``ssgan``, no private name is imported
across modules."""

from __future__ import annotations

import ast
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ssgan.train import loop as train

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_tiny_4steps.json"
RUN = ["--steps", "4", "--batch", "4", "--log-every", "2", "--ckpt-every", "4", "--sample-every", "4",
       "--metrics", "none", "--device", "cpu", "--threads", "1"]


def checkpoint_digest(path: Path) -> dict[str, str]:
    """sha256 per section of a checkpoint (``g``, ``d``, ``g_ema``, ``rank0`` …: every tensor's name
    and bytes), and of the metadata that the run's arguments do not name (configuration,
    optimiser states, step)."""
    hashes: dict[str, hashlib._Hash] = defaultdict(hashlib.sha256)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        for name in sorted(f.keys()):
            h = hashes[name.split(".")[0]]
            h.update(name.encode())
            h.update(f.get_tensor(name).reshape(-1).view(torch.uint8).numpy().tobytes())
    out = {k: h.hexdigest() for k, h in hashes.items()}
    out.update({f"meta:{k}": hashlib.sha256(meta[k].encode()).hexdigest()
                for k in ("config", "g_optim", "d_optim", "step", "sections")})
    return out


def test_same_checkpoint_as_before_the_layout_change(tmp_path):
    """The golden digests were written from the flat layout's ``train.py`` (commit 977b91f) with the
    same flags, torch 2.13.0 on CPU, one thread. Bit-identical float results need the same torch
    build and CPU kernels, so another torch version or CPU capability skips (says why)."""
    golden = json.loads(GOLDEN.read_text())
    env = {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}
    if env != golden["env"]:
        pytest.skip(f"golden digests were made with {golden['env']}, this is {env}")
    assert train.main([*RUN, "--out", str(tmp_path / "run")]) == 0
    got = checkpoint_digest(tmp_path / "run" / "checkpoints" / "0000004.safetensors")
    differ = sorted(k for k in golden["digest"] if got.get(k) != golden["digest"][k])
    assert not differ, f"sections that changed: {differ}"
    assert set(got) == set(golden["digest"])


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
