"""bench.learning on CPU: the mask measures and the pass/fail comparison on hand-made masks and on a
deliberately different generator, and a real run of both paths (reference: fp32 eager; fast:
bf16 autocast, torch.compile with aot_eager, no Triton op) at a tiny budget."""

import json

import pytest
import torch

from bench import learning as BL
from ssgan.model.generator import SemanticGenerator


def test_frequency_l1():
    f = torch.tensor([0.25, 0.125, 0.625, 0.0])
    assert BL.frequency_l1(f, f) == 0.0
    assert BL.frequency_l1(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 2.0


def test_fine_coarse_miou_agreement():
    coarse = torch.randn(2, 3, 4, 4)
    seg = coarse.repeat_interleave(2, -1).repeat_interleave(2, -2)  # the coarse mask upsampled
    assert BL.fine_coarse_miou(seg, coarse) == 1.0
    assert BL.fine_coarse_miou(seg.roll(1, dims=1), coarse) < 0.5  # classes permuted


def measures(freqs, miou):
    return {"class_frequencies": freqs, "frequency_l1_to_data": 0.0, "fine_coarse_miou": miou}


def test_compare_passes_and_fails():
    ref = measures([0.5, 0.3, 0.2], 0.8)
    assert BL.compare(ref, measures([0.48, 0.32, 0.2], 0.75))["pass"]
    moved = BL.compare(ref, measures([0.6, 0.2, 0.2], 0.8))  # 10 % of the pixels changed class
    assert not moved["pass"] and moved["frequency_l1_between"] == pytest.approx(0.2)
    assert not BL.compare(ref, measures([0.5, 0.3, 0.2], 0.65))["pass"]
    assert BL.compare(ref, measures([0.6, 0.2, 0.2], 0.8), tol_freq=0.25)["pass"]


@pytest.mark.slow
def test_bench_learning_cpu_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("OUT", raising=False)
    out = tmp_path / "learning.json"
    # no Triton op here: under the interpreter fuse alone costs ~40 s per step on a busy 2-core CPU
    code = BL.main(["--device", "cpu", "--kimg", "0.008", "--n-eval", "16", "--triton-ops", "",
                    "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == (0 if report["pass"] else 1) and report["pass"] == report["comparison"]["g_ema"]["pass"]
    assert report["config"]["steps"] == 2 and report["config"]["size"] == BL.CPU_CONFIG.size
    fast = report["paths"]["fast"]
    assert fast.startswith("triton ops (none), bf16") and "aot_eager" in fast
    assert set(report["runs"]) == {"reference", "fast"}  # no seed-spread run on CPU by default
    k = BL.CPU_CONFIG.seg_dim
    for run in report["runs"].values():
        for which in ("g_ema", "g"):
            m = run[which]
            assert len(m["class_frequencies"]) == k
            assert sum(m["class_frequencies"]) == pytest.approx(1, abs=1e-4)
            assert 0 <= m["frequency_l1_to_data"] <= 2 and 0 <= m["fine_coarse_miou"] <= 1
    for which, c in report["comparison"].items():  # the verdict is the comparison of the stored measures
        assert c == BL.compare(report["runs"]["reference"][which], report["runs"]["fast"][which])
    assert "fast vs reference (g_ema)" in capsys.readouterr().out

    # a deliberately different generator (its segmentation forced to the background) fails
    torch.manual_seed(0)
    G = SemanticGenerator(BL.CPU_CONFIG)
    with torch.no_grad():
        G.render_net.to_segs[-1].bias[0, 0] += 100.0
    z = torch.randn(16, BL.CPU_CONFIG.style_dim, generator=torch.Generator().manual_seed(12345))
    broken = BL.mask_measures(G, z, torch.tensor(report["data_frequencies"]))
    assert broken["class_frequencies"][0] == 1.0
    assert not BL.compare(report["runs"]["reference"]["g"], broken)["pass"]
