"""Bias, noise injection and scaled leaky ReLU in one element-wise pass.

    y = leaky_relu(x + noise_weight * noise + bias[c], 0.2) * gain,   gain = sqrt(2)

x: (N, C, ...); bias: (C,) or None; noise: broadcastable to x (N, 1, H, W) or None;
noise_weight: a one-element tensor (the learned NoiseInjection weight) or None.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def bias_act_reference(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    gain: float = SQRT2,
) -> torch.Tensor:
    """The op in plain PyTorch (the mathematical truth)."""
    if noise is not None:
        x = x + noise_weight * noise
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * gain


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    gain: float = SQRT2,
) -> torch.Tensor:
    """:func:`bias_act_reference`'s maths with the backend chosen by :mod:`.backend`."""
    return bias_act_reference(x, bias, noise, noise_weight, negative_slope, gain)
