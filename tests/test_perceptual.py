"""ssgan.edit.perceptual: MS-SSIM against hand-worked values and a plain NumPy reference; LPIPS-VGG
loaded from random weights in the accepted file formats, and one-line errors for other files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssgan.edit import perceptual as P

# ----- MS-SSIM ----------------------------------------------------------------------------------


def test_scales():
    assert [P.ms_ssim_scales(s) for s in (11, 16, 32, 64, 176, 1024)] == [1, 1, 2, 3, 5, 5]
    with pytest.raises(ValueError, match="smaller than the 11-tap"):
        P.ms_ssim_scales(8)


@pytest.mark.parametrize("size,scales", [(32, 2), (176, 5)])
def test_constant_images_hand_worked(size, scales):
    # Constant images a = 0.5, b = 0.25 (range 2): every variance and covariance is 0, so cs = C2 / C2
    # = 1 at every scale, and l = (2ab + C1) / (a² + b² + C1) with C1 = 0.02² = 4e-4:
    # l = 0.2504 / 0.3129. MS-SSIM = l^(w_M / Σ w) over the M scales that fit.
    x, y = torch.full((1, 3, size, size), 0.5), torch.full((1, 3, size, size), 0.25)
    w = P.MS_SSIM_WEIGHTS[:scales]
    expected = (0.2504 / 0.3129) ** (w[-1] / sum(w))
    assert P.ms_ssim(x, y).item() == pytest.approx(expected, rel=1e-5)
    assert P.ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def _reference_ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Straight from the definition, one image (C, H, W), float64, explicit windows."""
    t = np.arange(11) - 5.0
    g = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scales = P.ms_ssim_scales(x.shape[-1])
    weights = np.array(P.MS_SSIM_WEIGHTS[:scales]) / sum(P.MS_SSIM_WEIGHTS[:scales])
    result = 1.0
    for j in range(scales):
        if j:
            h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
            x = x[:, :h, :w].reshape(x.shape[0], h // 2, 2, w // 2, 2).mean((2, 4))
            y = y[:, :h, :w].reshape(y.shape[0], h // 2, 2, w // 2, 2).mean((2, 4))
        win_x = np.lib.stride_tricks.sliding_window_view(x, (11, 11), axis=(1, 2))
        win_y = np.lib.stride_tricks.sliding_window_view(y, (11, 11), axis=(1, 2))
        mx, my = (win_x * kernel).sum((-1, -2)), (win_y * kernel).sum((-1, -2))
        vx = (win_x ** 2 * kernel).sum((-1, -2)) - mx ** 2
        vy = (win_y ** 2 * kernel).sum((-1, -2)) - my ** 2
        cxy = (win_x * win_y * kernel).sum((-1, -2)) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
        value = (lum * cs).mean() if j == scales - 1 else cs.mean()
        result *= max(value, 0.0) ** weights[j]
    return result


def test_matches_reference_implementation():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 48, 48, generator=g) * 2 - 1
    blurred = F.avg_pool2d(x, 3, 1, 1)
    y = torch.stack([blurred[0], x[1] + 0.2 * torch.randn(3, 48, 48, generator=g), -x[2]])
    got = P.ms_ssim(x, y)
    expected = [_reference_ms_ssim(x[i].double().numpy(), y[i].double().numpy()) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert 0 < got[0] < 1 and 0 < got[1] < 1 and got[2] == 0  # negated image: structure anti-correlated
    # the loss: 1 − MS-SSIM, differentiable
    y.requires_grad_(True)
    P.MSSSIMDistance()(x, y).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


# ----- LPIPS-VGG ---------------------------------------------------------------------------------


def _torchvision_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under torchvision's vgg16() key names (features.<i>, plus a stand-in classifier)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in P.vgg16_features().state_dict().items():
        fan_in = value[0].numel() if value.ndim > 1 else 1
        state[f"features.{key}"] = torch.randn(value.shape, generator=g) * (2 / fan_in) ** 0.5
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def _lins(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
            for k, c in enumerate(P.LPIPS_CHANNELS)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips")
    vgg, lins = _torchvision_state(), _lins()
    torch.save(vgg, d / "vgg16-397923af.pth")
    torch.save(lins, d / "vgg.pth")
    # lpips.LPIPS(net='vgg').state_dict(): the trunk under net.slice<s>.<i>, the heads beside it
    slices = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}
    merged = {f"net.slice{s}.{k[len('features.'):]}": v for k, v in vgg.items() if k.startswith("features.")
              for s, idx in slices.items() if int(k.split(".")[1]) in idx}
    torch.save({**merged, **lins}, d / "lpips_vgg_full.pth")
    return d, vgg, lins


def _straightforward_lpips(x, y, vgg, lins) -> torch.Tensor:
    """LPIPS v0.1 written out: scaling layer, VGG16 conv/relu/pool by index, five taps."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    pools_after = {2, 7, 14, 21}  # conv indices followed by relu then max-pool
    taps_after = {2, 7, 14, 21, 28}
    total = torch.zeros(x.shape[0])
    feats = []
    for img in (x, y):
        h, out = (img - shift) / scale, []
        for i in convs:
            h = F.relu(F.conv2d(h, vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"], padding=1))
            if i in taps_after:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            if i in pools_after:
                h = F.max_pool2d(h, 2)
        feats.append(out)
    for k, (a, b) in enumerate(zip(*feats)):
        total += F.conv2d((a - b) ** 2, lins[f"lin{k}.model.1.weight"]).mean((1, 2, 3))
    return total


def test_lpips_from_torchvision_and_lpips_files(weights):
    d, vgg, lins = weights
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 3, 32, 32, generator=g)).clamp(-1, 1)
    expected = _straightforward_lpips(x, y, vgg, lins)
    two = P.load_perceptual([d / "vgg16-397923af.pth", d / "vgg.pth"])
    one = P.load_perceptual([d / "lpips_vgg_full.pth"])
    assert isinstance(two, P.LPIPSVGG) and two.name == "LPIPS-VGG"
    with torch.no_grad():
        for model in (two, one):
            torch.testing.assert_close(model(x, y), expected, rtol=1e-4, atol=1e-6)
            assert model(x, x).abs().max() < 1e-6


def test_lpips_torchscript_in_nvlabs_form(weights, tmp_path):
    """A TorchScript module with the call convention of NVlabs' vgg16.pt (0-255 input,
    ``resize_images``/``return_lpips`` flags, features whose squared distance is LPIPS)."""
    d, vgg, lins = weights
    reference = P.load_perceptual([d / "vgg16-397923af.pth", d / "vgg.pth"])

    class NVlabsStyle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = P.vgg16_features()
            self.features.load_state_dict({k[len("features."):]: v for k, v in vgg.items()
                                           if k.startswith("features.")})
            heads = [lins[f"lin{k}.model.1.weight"].flatten() for k in range(5)]
            self.register_buffer("lin", torch.cat(heads))
            self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False):
            h = (x / 127.5 - 1 - self.shift) / self.scale
            out: list[torch.Tensor] = []
            i, offset = 0, 0
            for layer in self.features:
                h = layer(h)
                if i in [3, 8, 15, 22, 29]:
                    c = h.shape[1]
                    f = h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10)
                    w = self.lin[offset:offset + c].view(1, c, 1, 1)
                    out.append((f * w.sqrt() / float(h.shape[2] * h.shape[3]) ** 0.5).flatten(1))
                    offset += c
                i += 1
            return torch.cat(out, 1)

    path = tmp_path / "vgg16.pt"
    torch.jit.script(NVlabsStyle()).save(str(path))
    scripted = P.load_perceptual([path])
    assert isinstance(scripted, P.ScriptedLPIPS) and "TorchScript" in scripted.name
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = x.flip(-1)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x, y), reference(x, y), rtol=1e-4, atol=1e-6)


def test_lpips_bad_files_one_line_errors(weights, tmp_path, monkeypatch):
    d, vgg, lins = weights

    def error(paths) -> str:
        with pytest.raises(P.PerceptualWeightsError) as info:
            P.load_perceptual(paths)
        msg = str(info.value)
        assert "\n" not in msg
        return msg

    assert "does not exist" in error([tmp_path / "missing.pt"])
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    msg = error([tmp_path / "garbage.pth"])
    assert "garbage.pth" in msg and "vgg16.pt" in msg  # names the file and what is accepted
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)},
               tmp_path / "resnet18.pth")
    assert "resnet18.pth" in error([tmp_path / "resnet18.pth", d / "vgg.pth"])
    assert "not VGG16" in error([tmp_path / "resnet18.pth", d / "vgg.pth"])
    wrong = dict(vgg)
    wrong["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(wrong, tmp_path / "vgg_wrong.pth")
    assert "features.0.weight has shape (64, 3, 5, 5)" in error([tmp_path / "vgg_wrong.pth", d / "vgg.pth"])
    torch.save({k: v for k, v in vgg.items() if k != "features.28.weight"}, tmp_path / "vgg_short.pth")
    assert "features.28.weight" in error([tmp_path / "vgg_short.pth", d / "vgg.pth"])
    alex = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(alex, tmp_path / "alex.pth")
    assert "not the VGG heads" in error([d / "vgg16-397923af.pth", tmp_path / "alex.pth"])
    torch.jit.script(torch.nn.Linear(3, 3)).save(str(tmp_path / "linear.pt"))
    assert "TorchScript but not NVlabs' vgg16.pt" in error([tmp_path / "linear.pt"])
    monkeypatch.setattr(P, "installed_lpips_heads", lambda: None)
    assert "pass the heads too" in error([d / "vgg16-397923af.pth"])
