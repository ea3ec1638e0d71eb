"""bench.step_cost: the dispatch-level counter on known ops, and ``--quick`` (tiny preset) end to end
in a subprocess without Triton's interpreter (as on a GPU machine, its launches intercepted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import step_cost

ROOT = Path(__file__).resolve().parent.parent


def test_counter_bytes_flops_and_free_ops():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    c = step_cost.Counter(phase="x")
    with c:
        y = a @ b  # mm: reads 8·16 + 16·4 floats, writes 8·4, 2·8·16·4 FLOPs
        y.t().reshape(-1)  # a view, then a copy (the transpose is not contiguous)
        y.add_(1.0)  # in place: reads and writes y
        torch.empty(5)  # an allocation: nothing
    mm, clone, add = c.stats["x"]["aten::mm"], c.stats["x"]["aten::clone"], c.stats["x"]["aten::add_"]
    assert (mm.bytes_read, mm.bytes_written, mm.launches) == ((128 + 64) * 4, 32 * 4, 1)
    assert mm.flops == 2 * 8 * 16 * 4
    assert (clone.bytes_read, clone.bytes_written) == (128, 128)
    assert (add.bytes_read, add.bytes_written) == (128, 128)
    assert set(c.stats["x"]) == {"aten::mm", "aten::clone", "aten::add_"}


def test_tensor_bytes_counts_broadcast_storage_once():
    x = torch.randn(1, 3, 1).expand(4, 3, 5)
    assert step_cost.tensor_bytes(x) == 3 * 4
    assert step_cost.tensor_bytes(torch.empty(0, 7)) == 0


@pytest.mark.slow
def test_quick_report(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "step_cost.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "bench.step_cost", "--quick", "--json", str(out)], cwd=ROOT,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    ref, fast = report["paths"]["reference"], report["paths"]["fast"]
    for path in (ref, fast):
        am = path["amortised"]
        for phase in step_cost.PHASES:
            ph = path["phases"][phase]
            assert ph["launches"] > 0 and ph["bytes"] == ph["bytes_read"] + ph["bytes_written"] > 0
            assert ph["lower_bound_ms"] >= max(ph["bytes_bound_ms"], ph["flops_bound_ms"]) * (1 - 1e-9)
        weighted = sum(p["bytes"] * p["weight"] for p in path["phases"].values())
        assert am["bytes"] == pytest.approx(weighted)
        assert path["phases"]["R1"]["weight"] == 1 / 16 and path["phases"]["PL"]["weight"] == 1 / 4
    # the reference path runs no custom op; the fast path runs all of them, each with >= 1 launch
    assert not ref["custom_op_launches"]
    ops = {"fuse", "fuse_backward", "grouped_mlp", "grouped_mlp_backward", "bias_act", "upfirdn2d"}
    assert set(fast["custom_op_launches"]) >= {f"ssgan::{op}" for op in ops}
    assert min(min(v) for v in fast["custom_op_launches"].values()) >= 1
    # the same FLOPs of matrix products to within the Triton ops' accounting; fewer bytes moved
    assert fast["amortised"]["flops"] == pytest.approx(ref["amortised"]["flops"], rel=0.1)
    assert report["headline"]["bytes_ratio_fast_over_reference"] == pytest.approx(
        fast["amortised"]["bytes"] / ref["amortised"]["bytes"])
    assert report["headline"]["bytes_ratio_fast_over_reference"] < 1
