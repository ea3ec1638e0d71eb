"""bench.sm90: the occupancy model, and ``--quick`` at the paper's shapes (every kernel, bf16, the
largest-tile config kept by the pruning) compiled for sm_90 in a subprocess without Triton's
interpreter: no bf16 kernel spills or needs more shared memory than a block can have, except the
exceptions bench.sm90 names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sm90

ROOT = Path(__file__).resolve().parent.parent


def test_occupancy_limiters():
    # 166 registers, 4 warps, 80 KB shared: registers allow 12 warps (3 blocks), shared memory 2 blocks
    assert sm90.occupancy(166, 81920, 4) == {"blocks_per_sm": 2, "warps_per_sm": 8, "occupancy": 8 / 64,
                                             "limiter": "shared memory"}
    # 255 registers, 8 warps, no shared memory: 65536 / (8192 per warp) = 8 warps, one block
    assert sm90.occupancy(255, 0, 8)["warps_per_sm"] == 8
    assert sm90.occupancy(255, 0, 8)["limiter"] == "registers"
    # 32 registers, 4 warps: 16 blocks, as many as the warp count allows: full occupancy
    assert sm90.occupancy(32, 0, 4) == {"blocks_per_sm": 16, "warps_per_sm": 64, "occupancy": 1.0,
                                        "limiter": "warps"}


@pytest.mark.slow
def test_quick_paper_shapes_bf16(tmp_path):
    pytest.importorskip("triton.backends.nvidia")
    out = tmp_path / "sm90.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(ROOT), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-m", "bench.sm90", "--quick", "--json", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    kernels = {r["kernel"].rsplit(".", 1)[-1] for r in report["kernels"]}
    # every kernel the model launches, found without a list: the fusion GEMMs, the local MLP, the
    # element-wise and FIR ops
    assert {"_fwd_kernel", "_bwd_h_kernel", "_bwd_v_kernel", "_bwd_kernel", "_bias_act_fwd_kernel",
            "_bias_act_bwd_kernel"} <= kernels
    assert all(r["dtype"] == "bf16" and r["regs"] > 0 for r in report["kernels"])
    assert report["checks"]["ok"], report["checks"]["failures"]
    for r in report["kernels"]:
        excused = sm90.exception_key(r) in sm90.EXCEPTIONS
        fits = r["spill_stores"] == r["spill_loads"] == 0 and r["shared"] <= sm90.SM90_SHARED_BLOCK
        assert excused or fits, r
    # the GEMM kernels use Hopper's tensor cores
    assert all(r["wgmma"] + r["mma_sync"] > 0 for r in report["kernels"] if "fusion" in r["kernel"])
