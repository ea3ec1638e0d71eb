"""Image distances for inversion: MS-SSIM (weight-free) and LPIPS-VGG (from a weights file).

Every distance here is an ``nn.Module`` ``d(x, y) -> (N,)`` on images in [−1, 1] with a ``name``
saying what it computes; :func:`load_perceptual` builds the one ``ssgan invert`` uses.

**MS-SSIM** (Wang, Simoncelli & Bovik 2003). With a Gaussian window (11 taps, σ = 1.5, applied
'valid', no padding) giving local means μ, variances σ² and covariance σ_xy, and
C1 = (0.01·L)², C2 = (0.03·L)² for the data range L (2 for [−1, 1]):

    l(x, y)  = (2 μx μy + C1) / (μx² + μy² + C1)
    cs(x, y) = (2 σxy + C2) / (σx² + σy² + C2)
    MS-SSIM  = Π_{j<M} relu(mean cs_j)^{w_j} · relu(mean (l·cs)_M)^{w_M}

over M scales, each the previous one average-pooled 2×2, with the weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Scales whose side would be smaller than the window
are dropped and the remaining weights renormalised to sum to 1 (a 32 px image keeps 2 scales).
The weight-free perceptual loss is 1 − MS-SSIM.

**LPIPS-VGG** (Zhang et al. 2018, v0.1): inputs in [−1, 1] shifted/scaled per channel, VGG16
features at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, each unit-normalised over channels
(f / (‖f‖ + 1e-10)), squared differences weighted per channel by the linear heads w_l ≥ 0,
averaged over positions and summed over layers:  d = Σ_l mean_hw Σ_c w_lc (f̂0 − f̂1)².

Accepted weights (nothing is downloaded):

* NVlabs' TorchScript ``vgg16.pt`` (the file stylegan2-ada-pytorch's projector and PPL metric
  use, https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt),
  called as ``m(x_0_255, resize_images=False, return_lpips=True)``; d = ‖m(x) − m(y)‖².
* torchvision's VGG16 ImageNet state dict (``vgg16-397923af.pth``, keys ``features.<i>.*``)
  plus the linear heads of the ``lpips`` PyPI package (``lpips/weights/v0.1/vgg.pth``, keys
  ``lin<k>.model.1.weight``), as two files or one; with the VGG file alone the heads are taken
  from an installed ``lpips`` package. A saved ``lpips.LPIPS(net='vgg').state_dict()`` (keys
  ``net.slice<s>.<i>.*`` and ``lin<k>.*``) holds both in one file.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# torchvision's vgg16().features up to relu5_3: (in, out) per 3×3 conv, "M" a 2×2 max-pool.
VGG16_LAYERS: tuple = ((3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256),
                       (256, 256), "M", (256, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512),
                       (512, 512))
LPIPS_TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)  # indices in ``features`` of relu1_2 … relu5_3
LPIPS_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)


class PerceptualWeightsError(ValueError):
    """A ``--lpips-weights`` file that cannot be used; the message names it and the files accepted."""


# ----- MS-SSIM ----------------------------------------------------------------------------------
def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian g_i ∝ exp(−(i − (size−1)/2)² / 2σ²), (size,)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).float()


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of (N, C, H, W), channel by channel."""
    c, k = x.shape[1], window.numel()
    w = window.to(x)
    x = F.conv2d(x, w.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, w.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_maps(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0,
              window: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The luminance map l and the contrast-structure map cs (module docstring), each
    (N, C, H − k + 1, W − k + 1)."""
    window = gaussian_window() if window is None else window
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, window), _blur(y, window)
    vx = _blur(x * x, window) - mx * mx
    vy = _blur(y * y, window) - my * my
    cxy = _blur(x * y, window) - mx * my
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return lum, cs


def ms_ssim_scales(size: int, window: int = 11, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """Scales M whose smallest side, size / 2^j, is still at least the window."""
    m = 0
    while m < max_scales and size // 2 ** m >= window:
        m += 1
    if m == 0:
        raise ValueError(f"images of side {size} are smaller than the {window}-tap MS-SSIM window")
    return m


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0,
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> torch.Tensor:
    """MS-SSIM of each image pair (module docstring), (N,); x, y (N, C, H, W), computed in fp32."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ms_ssim needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    x, y = x.float(), y.float()
    window = gaussian_window()
    m = ms_ssim_scales(min(x.shape[-2:]), window.numel(), len(weights))
    w = torch.tensor(weights[:m], dtype=torch.float32, device=x.device)
    w = w / w.sum()
    factors = []
    for j in range(m):
        if j:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        lum, cs = ssim_maps(x, y, data_range, window)
        value = (lum * cs if j == m - 1 else cs).mean((1, 2, 3))
        factors.append(F.relu(value))
    return torch.prod(torch.stack(factors, 1) ** w, 1)


class MSSSIMDistance(nn.Module):
    """1 − MS-SSIM: the weight-free perceptual distance, (N,)."""

    name = "MS-SSIM pyramid (1 - MS-SSIM, no weights)"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1 - ms_ssim(x, y)


# ----- LPIPS-VGG --------------------------------------------------------------------------------
def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3 (same indices, so its state dict loads)."""
    layers: list[nn.Module] = []
    for spec in VGG16_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(spec[0], spec[1], 3, padding=1), nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


class LPIPSVGG(nn.Module):
    """LPIPS-VGG v0.1 (module docstring); ``features`` and ``lin`` hold the weights."""

    name = "LPIPS-VGG"

    def __init__(self):
        super().__init__()
        self.features = vgg16_features()
        self.lin = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The unit-normalised relu1_2 … relu5_3 features of x in [−1, 1]."""
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features[:LPIPS_TAPS[-1] + 1]):
            h = layer(h)
            if i in LPIPS_TAPS:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = x.new_zeros(x.shape[0])
        for fx, fy, w in zip(self.taps(x), self.taps(y), self.lin):
            d = d + ((fx - fy).square() * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
        return d


class ScriptedLPIPS(nn.Module):
    """NVlabs' TorchScript ``vgg16.pt``: d = ‖m(x) − m(y)‖² with m's LPIPS features of 0–255 images."""

    name = "LPIPS-VGG (NVlabs TorchScript vgg16.pt)"

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module
        self.requires_grad_(False)

    def lpips_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.module((x + 1) * 127.5, resize_images=False, return_lpips=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.lpips_features(x) - self.lpips_features(y)).square().sum(1)


# ----- loading ----------------------------------------------------------------------------------
ACCEPTED = ("NVlabs' TorchScript vgg16.pt, or torchvision's VGG16 state dict (vgg16-397923af.pth) "
            "plus the lpips package's linear heads (lpips/weights/v0.1/vgg.pth)")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_script(path: Path) -> ScriptedLPIPS:
    try:
        with warnings.catch_warnings():  # the file format is TorchScript: its deprecation is not the user's
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise PerceptualWeightsError(f"cannot load TorchScript {path}: {str(e).splitlines()[0]}") from None
    scripted = ScriptedLPIPS(module)
    try:  # a probe: NVlabs' vgg16.pt maps (N, 3, H, W) 0-255 images to (N, features)
        with torch.no_grad():
            out = scripted.lpips_features(torch.zeros(2, 3, 64, 64))
        ok = isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 2
    except Exception:
        ok = False
    if not ok:
        raise PerceptualWeightsError(f"{path} is TorchScript but not NVlabs' vgg16.pt (calling it as "
                                     f"m(images, resize_images=False, return_lpips=True) fails); "
                                     f"accepted: {ACCEPTED}")
    return scripted


_TRUNK_KEY = re.compile(r"^(?:features|net\.slice\d)\.(\d+)\.(weight|bias)$")
_LIN_KEY = re.compile(r"^lin(\d)\.model\.1\.weight$")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PerceptualWeightsError(f"cannot read {path} as a torch state dict "
                                     f"({str(e).splitlines()[0][:120]}); accepted: {ACCEPTED}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PerceptualWeightsError(f"{path} is not a state dict of tensors; accepted: {ACCEPTED}")
    return state


def installed_lpips_heads() -> Path | None:
    """``vgg.pth`` inside an installed ``lpips`` package (found without importing it), or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "vgg.pth"
    return path if path.is_file() else None


def _split_states(paths: Sequence[Path]) -> tuple[dict, dict]:
    """VGG trunk tensors by ``<index>.<weight|bias>`` and LPIPS heads by layer, each with its file."""
    trunk: dict[str, tuple[torch.Tensor, Path]] = {}
    lins: dict[int, tuple[torch.Tensor, Path]] = {}
    for path in paths:
        for key, value in _read_state(path).items():
            if m := _TRUNK_KEY.match(key):
                trunk[f"{m[1]}.{m[2]}"] = (value, path)
            elif m := _LIN_KEY.match(key):
                lins[int(m[1])] = (value, path)
    return trunk, lins


def _lpips_from_states(paths: Sequence[Path]) -> LPIPSVGG:
    trunk, lins = _split_states(paths)
    names = ", ".join(str(p) for p in paths)
    if not trunk:
        raise PerceptualWeightsError(f"no VGG16 weights (keys features.<i>.weight) in {names}: it is not "
                                     f"VGG16; accepted: {ACCEPTED}")
    if not lins:
        heads = installed_lpips_heads()
        if heads is None:
            raise PerceptualWeightsError(f"{names} holds no LPIPS linear heads (lin<k>.model.1.weight) and "
                                         f"no lpips package is installed: pass the heads too, "
                                         f"--lpips-weights VGG.pth lpips/weights/v0.1/vgg.pth")
        lins = _split_states([heads])[1]
    model = LPIPSVGG()
    for key, param in model.features.state_dict().items():
        if key not in trunk:
            raise PerceptualWeightsError(f"{names} lacks VGG16 weight features.{key}: it is not VGG16 "
                                         f"(accepted: {ACCEPTED})")
        value, path = trunk[key]
        if value.shape != param.shape:
            raise PerceptualWeightsError(f"{path}: features.{key} has shape {tuple(value.shape)} but VGG16 "
                                         f"needs {tuple(param.shape)}: it is not VGG16")
    model.features.load_state_dict({k: v for k, (v, _) in trunk.items() if k in model.features.state_dict()})
    for k, c in enumerate(LPIPS_CHANNELS):
        if k not in lins:
            raise PerceptualWeightsError(f"{names} lacks the LPIPS head lin{k}.model.1.weight")
        value, path = lins[k]
        if value.numel() != c:
            raise PerceptualWeightsError(f"{path}: lin{k}.model.1.weight has {value.numel()} weights but "
                                         f"LPIPS-VGG needs {c}: these are not the VGG heads (vgg.pth)")
        model.lin[k].data.copy_(value.reshape(c))
    return model.eval()


def load_perceptual(paths: Sequence[str | os.PathLike] | None = None) -> nn.Module:
    """The perceptual distance: LPIPS-VGG from ``paths`` (one TorchScript ``vgg16.pt``, or VGG16
    and LPIPS-head state dicts), or :class:`MSSSIMDistance` when no path is given. Unusable files
    raise :class:`PerceptualWeightsError` naming the file."""
    if not paths:
        return MSSSIMDistance()
    files = [Path(p) for p in paths]
    for p in files:
        if not p.is_file():
            raise PerceptualWeightsError(f"LPIPS weights file {p} does not exist; accepted: {ACCEPTED}")
    scripts = [p for p in files if _is_torchscript(p)]
    if scripts:
        if len(files) > 1:
            raise PerceptualWeightsError(f"{scripts[0]} is a TorchScript vgg16.pt, which holds everything: "
                                         f"pass it alone")
        return _load_script(scripts[0])
    return _lpips_from_states(files)
