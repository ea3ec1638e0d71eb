"""CPU tests of bench/kernels.py: the report code (with injected fake timers: this tests the
JSON/table code, it measures nothing), the input shapes and the FLOP counts (the no-CUDA exit:
tests/test_bench_no_cuda.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench.kernels as bk  # noqa: E402

PAPER = bk.BenchConfig()  # B=16, K=13, L=10, C=64, F=512, S=64
TOP_KEYS = {"device", "commit", "torch", "triton", "date", "peak_tflops", "benchmarks"}
RECORD_KEYS = {"name", "config", "reference_ms", "ssgan_ms", "speedup", "reference_peak_mib",
               "ssgan_peak_mib", "memory_ratio", "ssgan_tflops", "pct_of_peak"}


def test_paper_config_defaults():
    assert (PAPER.B, PAPER.K, PAPER.L, PAPER.C, PAPER.F, PAPER.S, PAPER.P) == (16, 13, 10, 64, 512, 64, 4096)
    cfg = bk.config_from_args(bk.parse_args([]))
    assert cfg == PAPER
    assert bk.parse_args([]).dtype == "bf16"


def test_flops_paper_config_by_hand():
    # 2*B*K*P*L*C^2 = 2*16*13*4096*10*64*64 and 2*B*P*K*C*F = 2*16*4096*13*64*512
    mlp, fusion = 69_793_218_560.0, 55_834_574_848.0
    assert bk.flops("grouped_mlp_fwd", PAPER) == mlp
    assert bk.flops("fusion_fwd", PAPER) == fusion
    assert bk.flops("local_generators_fwd", PAPER) == mlp + fusion
    assert bk.flops("grouped_mlp_fwd_bwd", PAPER) == 3 * mlp
    assert bk.flops("fusion_fwd_bwd", PAPER) == 3 * fusion
    assert bk.flops("local_generators_fwd_bwd", PAPER) == 3 * (mlp + fusion)
    with pytest.raises(KeyError):
        bk.flops("nope_fwd", PAPER)


def test_inputs_have_paper_shapes_on_meta():
    x = bk.build_inputs(PAPER, "meta", torch.float32)
    B, K, L, C, F, P = 16, 13, 10, 64, 512, 4096
    shapes = {"x": (1, 1, P, C), "styles": (B, K, L, C), "weight": (K, L, C, C), "bias": (K, L, C),
              "depth_w": (K, C), "depth_b": (K,), "feat_w": (K, F, C), "feat_b": (K, F),
              "w_eff": (B, K, L, C, C), "h": (B, K, P, C), "depth": (B, K, P), "transparent": (K,)}
    assert {k: tuple(v.shape) for k, v in x.items()} == shapes
    assert all(v.is_meta for v in x.values())
    grads = {k for k, v in x.items() if v.requires_grad}
    assert grads == set(shapes) - {"x", "transparent"}
    low = bk.cast_inputs(x, torch.bfloat16)
    assert low["h"].dtype == torch.bfloat16 and low["h"].requires_grad and low["h"].is_meta
    assert low["transparent"].dtype == torch.float32
    cases = bk.make_cases(PAPER, low, "triton")  # builds the upstream gradients, runs nothing
    assert set(cases) == set(bk.NAMES)


def _fake_time(fn):
    assert callable(fn)
    return 2.0


def _fake_peak(fn):
    assert callable(fn)
    return 100.0


def test_collect_report_json_and_table(tmp_path):
    cfg = bk.BenchConfig(B=2, K=3, L=2, C=16, F=32, S=4, depth_layer=1, transparent=(2,))
    peak = {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0, "source": "table: test"}
    records = bk.collect(cfg, ["bf16", "fp32"], _fake_time, _fake_peak, peak, device="meta")
    assert [r["name"] for r in records] == list(bk.NAMES) * 2
    assert [r["config"]["dtype"] for r in records] == ["bf16"] * 6 + ["fp32"] * 6
    env = {"device": "Fake GPU", "commit": "abc", "torch": "2.x", "triton": "3.x"}
    report = bk.make_report(records, env, peak)
    assert TOP_KEYS <= set(report)
    for r in report["benchmarks"]:
        assert RECORD_KEYS <= set(r)
        assert set(r["config"]) == {"B", "K", "L", "C", "F", "S", "dtype"}
        assert r["speedup"] == 1.0 and r["memory_ratio"] == 1.0
        expected = bk.flops(r["name"], cfg) / 2e-3 / 1e12
        assert r["ssgan_tflops"] == pytest.approx(expected)
        assert r["pct_of_peak"] == pytest.approx(100 * expected / peak[r["config"]["dtype"]])
    path = bk.write_json(report, tmp_path / "sub" / "out.json")
    loaded = json.loads(path.read_text())
    assert loaded["benchmarks"][0]["config"]["B"] == 2 and loaded["device"] == "Fake GPU"
    table = bk.format_table(report)
    for name in bk.NAMES:
        assert name in table
    assert "Fake GPU" in table and "B=2 K=3 L=2 C=16 F=32 S=4" in table


def test_ratios_and_missing_peak():
    cfg = bk.BenchConfig(B=1, K=2, L=1, C=16, F=16, S=2, depth_layer=1, transparent=())
    times = iter([8.0, 2.0])  # reference, then ssgan

    records = bk.collect(cfg, ["fp32"], lambda fn: next(times), lambda fn: 0.0, {"fp32": None},
                         device="meta", names=["fusion_fwd"])
    (r,) = records
    assert r["speedup"] == 4.0
    assert r["memory_ratio"] is None and r["pct_of_peak"] is None
    assert "fusion_fwd" in bk.format_table(bk.make_report(records, {}, {}))


def test_device_peak_table():
    assert bk.device_peak("NVIDIA H100 80GB HBM3")["bf16"] == 989.0
    assert bk.device_peak("NVIDIA H100 PCIe")["bf16"] == 756.0
    assert bk.device_peak("NVIDIA H200")["bf16"] == 989.0
    assert bk.device_peak("NVIDIA A100-SXM4-80GB")["bf16"] == 312.0
    assert bk.device_peak("NVIDIA H100 80GB HBM3")["fp32"] == 67.0
    measured = bk.device_peak("Mystery GPU", lambda: {"bf16": 1.0, "fp16": 1.0, "fp32": 0.5})
    assert measured["bf16"] == 1.0 and measured["source"].startswith("measured")
    assert bk.device_peak("Mystery GPU")["bf16"] is None


def test_default_path():
    import datetime

    p = bk.default_path("NVIDIA H100 80GB HBM3", datetime.date(2025, 1, 2))
    assert p == ROOT / "bench" / "results" / "nvidia-h100-80gb-hbm3-2025-01-02.json"
