"""Building blocks of the generator and discriminator, with the official parameter names.

Every layer keeps the parameter and buffer names of the official SemanticStyleGAN modules, so
an official state dict loads with ``strict=True``. Element-wise work and FIR filtering go
through :mod:`ssgan.kernels` (``bias_act``, ``upfirdn2d``), which pick the reference or the
Triton implementation at call time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssgan.kernels import bias_act, upfirdn2d

BLUR_KERNEL = (1, 3, 3, 1)


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable FIR filter k ⊗ k normalised to sum 1."""
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


class PixelNorm(nn.Module):
    """x · rsqrt(mean(x², dim=1) + 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalized linear layer: y = x (W · lr_mul/√in)ᵀ + b · lr_mul, optionally followed by
    leaky ReLU(0.2) × √2 (``activation='fused_lrelu'``). W is stored divided by lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return bias_act(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Equalized convolution: weight scaled by 1/√(in·k²) at run time."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """leaky ReLU(x + b, 0.2) × √2 with a learned per-channel bias b."""

    def __init__(self, channel: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias)


class Blur(nn.Module):
    """FIR filter with padding ``pad`` = (before, after) on both axes; the kernel is scaled by
    upsample_factor² when it follows a zero-inserting (transposed, stride-2) convolution."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """×2 upsampling by zero insertion and the 4×4 blur (kernel × 4)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class NoiseInjection(nn.Module):
    """Holds the learned scalar weight of the per-pixel noise (applied inside ``bias_act``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class ModulatedConv2d(nn.Module):
    """Parameters of a per-sample modulated 1×1 convolution of a local generator.

    ``weight`` is (1, out, in, 1, 1) and ``modulation`` the affine map w → s (bias init 1). The
    generator stacks these over classes and layers and runs them all through
    :func:`ssgan.kernels.grouped_mlp`; see :mod:`ssgan.kernels.local_mlp` for the maths."""

    def __init__(self, in_channel: int, out_channel: int, style_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, 1, 1))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)


class StyledConv(nn.Module):
    """One local-generator layer: modulated 1×1 conv, then bias + leaky ReLU × √2 (no noise)."""

    def __init__(self, in_channel: int, out_channel: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, style_dim)
        self.activate = FusedLeakyReLU(out_channel)


def fixed_modulated_weight(weight: torch.Tensor, modulation: torch.Tensor, scale: float,
                           demodulate: bool) -> torch.Tensor:
    """W' = modulation · scale · W, demodulated per output channel by rsqrt(Σ_{in,k,k} W'² + 1e-8).

    weight (…, out, in, k, k) and modulation (…, 1, in, 1, 1): leading dims stack several layers
    (the generator computes all local generators' to_feat / to_depth heads in one go)."""
    w = modulation * scale * weight
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum([-3, -2, -1], keepdim=True) + 1e-8)
    return w


class FixedStyledConv(nn.Module):
    """Convolution with a learned per-input-channel modulation instead of a per-sample style.

    W' = W · modulation / √(in·k²), demodulated per output channel by rsqrt(Σ W'² + 1e-8) when
    ``demodulate``. With ``upsample`` a stride-2 transposed convolution followed by the blur
    (kernel × 4); then optional noise injection and bias + leaky ReLU × √2.

    ``forward(x, noise, style)`` with a per-sample ``style`` s (B, in) is StyleGAN2's modulated
    convolution: W'_b = W · modulation · s_b / √(in·k²), demodulated per sample and output
    channel, computed as conv(x · s_b, W · modulation / √(in·k²)) · d_b with
    d_b,o = rsqrt(Σ_{i,k} W'_b,o,i,k² + 1e-8) (the same values; one shared weight, no grouped
    convolution; the blur is linear per channel, so d_b may follow it)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL,
                 inject_noise: bool = True, activate: bool = True):
        super().__init__()
        self.upsample = upsample
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = nn.Parameter(torch.ones(1, in_channel, 1, 1))
        self.demodulate = demodulate
        self.noise = NoiseInjection() if inject_noise else None
        self.activate = FusedLeakyReLU(out_channel) if activate else None

    def effective_weight(self) -> torch.Tensor:
        """The (out, in, k, k) weight actually convolved."""
        return fixed_modulated_weight(self.weight, self.modulation, self.scale, self.demodulate)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                style: torch.Tensor | None = None) -> torch.Tensor:
        if style is None:
            w = self.effective_weight()
        else:  # per-sample modulation (class doc)
            w = self.modulation * self.scale * self.weight
            x = x * style[:, :, None, None]
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if style is not None and self.demodulate:
            per_sample = w.square().sum([2, 3])[None] * style[:, None, :].square()  # (B, out, in)
            out = out * torch.rsqrt(per_sample.sum(2) + 1e-8)[:, :, None, None]
        if self.activate is None:
            return out
        if self.noise is None:
            return bias_act(out, self.activate.bias)
        if noise is None:
            noise = torch.randn(out.shape[0], 1, *out.shape[2:], device=out.device, dtype=out.dtype)
        return bias_act(out, self.activate.bias, noise, self.noise.weight)


class ToRGB(nn.Module):
    """1×1 fixed-modulation conv without demodulation, plus bias, plus the previous output
    upsampled ×2 (used for RGB, segmentation, and the local generators' to_feat / to_depth)."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.upsample = Upsample(blur_kernel)
        self.conv = FixedStyledConv(in_channel, out_channel, 1, demodulate=False, inject_noise=False,
                                    activate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channel, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                style: torch.Tensor | None = None) -> torch.Tensor:
        """``style``: a per-sample modulation (B, in), as :class:`FixedStyledConv`'s."""
        out = self.conv(x, style=style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """Discriminator conv: [blur] equalized conv (stride 2 when downsampling) [bias + lrelu]."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual discriminator block: (conv3×3 → blur + stride-2 conv3×3 + skip) / √2."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class PositionEmbedding(nn.Module):
    """Fourier features of 2-D coordinates followed by a bias-free 1×1 conv to ``out_channels``.

    features = [c, sin(2⁰c), cos(2⁰c), …, sin(2^(N-1)c), cos(2^(N-1)c)]  (2·(2N+1) channels)
    """

    def __init__(self, in_channels: int, out_channels: int, n_freqs: int):
        super().__init__()
        self.n_freqs = n_freqs
        n_features = in_channels * (2 * n_freqs + 1)
        self.weights = nn.Parameter(torch.randn(out_channels, n_features, 1, 1))
        self.scale = 1 / math.sqrt(n_features)

    def features(self, coords: torch.Tensor) -> torch.Tensor:
        out = [coords]
        for i in range(self.n_freqs):
            out += [torch.sin(2.0**i * coords), torch.cos(2.0**i * coords)]
        return torch.cat(out, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The learned bias-free 1×1 conv of precomputed :meth:`features`."""
        return F.conv2d(features, self.scale * self.weights)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(coords))
