"""pytest-benchmark version of ``python -m bench.kernels`` (same cases, same inputs).

Run on a GPU: ``pytest bench/test_bench_kernels.py --benchmark-only`` (add
``--benchmark-json=out.json`` to keep the numbers). Not part of the suite (pyproject's testpaths is
``tests``): it is collected only when named. Shapes: the paper configuration, overridable
with SSGAN_BENCH_BATCH / SSGAN_BENCH_SIZE. Skipped without CUDA. Before any timing, a module
fixture checks the triton outputs and gradients against the reference (as ``--check`` does).
Each round is one call followed by ``torch.cuda.synchronize()``; ``extra_info`` carries the
GFLOP count and the achieved TFLOP/s, which must not exceed the device's dense peak (a timing
that fast missed the GPU work).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench.kernels as bk  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU benchmarks need CUDA"),
]

CFG = bk.BenchConfig(B=int(os.environ.get("SSGAN_BENCH_BATCH", 16)),
                     S=int(os.environ.get("SSGAN_BENCH_SIZE", 64)))
VARIANTS = {"reference-fp32": ("reference", "fp32"), "ssgan-bf16": ("triton", "bf16"),
            "ssgan-fp32": ("triton", "fp32")}


@pytest.fixture(scope="module")
def base_inputs():
    inputs = bk.build_inputs(CFG, "cuda", torch.float32)
    yield inputs
    del inputs
    torch.cuda.empty_cache()


@pytest.fixture(scope="module")
def verified(base_inputs):
    """Triton outputs and gradients checked against the reference at these shapes (the CLI's
    --check), once, before anything is timed: a wrong kernel fails every benchmark."""
    return {dtype: bk.check(CFG, base_inputs, dtype) for dtype in ("bf16", "fp32")}


@pytest.fixture(scope="module")
def cases(base_inputs, verified):
    built = {}
    for variant, (backend, dtype) in VARIANTS.items():
        inputs = base_inputs if dtype == "fp32" else bk.cast_inputs(base_inputs, bk.DTYPES[dtype])
        built[variant] = bk.make_cases(CFG, inputs, backend)
    return built


def test_triton_matches_reference(verified):
    """Runs without --benchmark-only too; bk.check raises (in the fixture) on a mismatch."""
    for results in verified.values():
        assert set(results) == {"local_generators_fwd_bwd", "grouped_mlp_fwd_bwd", "fusion_fwd_bwd"}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", list(bk.NAMES))
def test_bench(benchmark, cases, name, variant):
    fn = cases[variant][name]

    def run():
        fn()
        torch.cuda.synchronize()

    for _ in range(3):  # compilation and Triton autotuning outside the timed rounds
        run()
    benchmark.group = name
    gflop = bk.flops(name, CFG) / 1e9
    benchmark.extra_info.update({"gflop": gflop, "config": CFG.record(VARIANTS[variant][1]),
                                 "backend": VARIANTS[variant][0]})
    benchmark.pedantic(run, rounds=30, warmup_rounds=5, iterations=1)
    if benchmark.disabled:  # --benchmark-disable: one untimed call, nothing to check
        return
    median_s = benchmark.stats.stats.median
    assert median_s > 0, "a round took no time: the timer measured nothing"
    tflops = gflop / median_s / 1e3
    benchmark.extra_info["tflops"] = tflops
    # faster than the hardware's dense peak means the rounds did not wait for the GPU work
    peak = bk.device_peak(torch.cuda.get_device_name()).get(VARIANTS[variant][1])
    if peak:
        assert tflops <= peak, f"{tflops:.0f} TFLOP/s > the {peak:.0f} TFLOP/s peak: the timing missed work"
