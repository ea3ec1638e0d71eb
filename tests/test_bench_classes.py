"""Classes that scale (issue 25, item 3): ``python -m bench.classes`` (counted bytes and FLOPs,
measured peak memory of the local generators + fusion against the class count K) and a model with
32 classes trained on the built-in data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import classes as BC
from ssgan.checkpoint import load_checkpoint
from ssgan.data.synthetic import SyntheticFaces
from ssgan.train import loop as train

ROOT = Path(__file__).resolve().parents[1]


def test_counted_cost_grows_with_k_and_the_fused_path_moves_fewer_bytes():
    """At the tiny preset's shapes: every count grows with K; the fused path moves fewer bytes than
    the reference (its custom ops never build the per-class K x F x P feature maps)."""
    counts = {K: {p: BC.count(BC.bench_config(K, 1, "tiny"), p) for p in BC.PATHS} for K in (2, 4)}
    for path in BC.PATHS:
        for part in ("fwd", "bwd", "fwd_bwd"):
            assert counts[4][path][part]["bytes"] > counts[2][path][part]["bytes"] > 0, (path, part)
        assert counts[4][path]["fwd_bwd"]["flops"] > counts[2][path]["fwd_bwd"]["flops"] > 0
    for K in (2, 4):
        assert counts[K]["fused"]["fwd_bwd"]["bytes"] < counts[K]["reference"]["fwd_bwd"]["bytes"]


def test_slope_and_bad_class_list(capsys):
    assert BC.slope([5, 13, 32], [10.0 + 3 * k for k in (5, 13, 32)]) == pytest.approx(3.0)
    assert BC.main(["--classes", "13"]) == 2
    assert "ssgan: error: --classes" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_sweep_writes_its_json(tmp_path):
    """``--quick``: K = 3, 5 at tiny shapes, each point measured in its own subprocess (25-50 s)."""
    out = tmp_path / "classes.json"
    proc = subprocess.run([sys.executable, "-m", "bench.classes", "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["classes"] == list(BC.QUICK_SWEEP) and report["batch"] == 1 and report["machine"]["cores"]
    for point in report["points"]:
        for path in BC.PATHS:
            m = point[path]["measured"]
            assert set(m) == set(BC.MEASURED) and all(v >= 0 for v in m.values())
            assert point[path]["counted"]["fwd_bwd"]["bytes"] > 0
    assert set(report["slope_per_class"]) == set(BC.PATHS)
    assert "| per extra class (slope over K) |" in proc.stdout


@pytest.mark.slow
def test_a_32_class_model_trains_on_the_built_in_data(tmp_path):
    """The tiny preset with seg_dim 32 (the built-in data draws classes 5..31 as extra shapes)
    trains 3 steps, every regularisation included; the checkpoint holds 32 classes."""
    assert int(SyntheticFaces(32, 4, seg_dim=32)[0]["label"].max()) >= 5  # extra classes are drawn
    out = tmp_path / "k32"
    assert train.main(["--preset", "tiny", "--seg-dim", "32", "--batch", "2", "--length", "8", "--steps", "3",
                       "--d-reg-every", "2", "--g-reg-every", "2", "--metrics", "none", "--device", "cpu",
                       "--outdir", str(out)]) == 0
    ck = load_checkpoint(out / "checkpoints" / "0000003.safetensors")
    assert ck.step == 3 and ck.config.seg_dim == 32 and ck.classes.k == 32
    for g in (ck.g, ck.g_ema):
        assert len(g.local_nets) == 32 and g.render_net.to_segs[-1].conv.weight.shape[0] == 32
    assert ck.d is not None
