"""All local generators of SemanticStyleGAN as one grouped, modulated per-pixel MLP.

Every class k has its own MLP of L layers of 1x1 modulated convolutions C -> C. For sample b,
class k and layer l with raw weight W (C_out x C_in) and style s = affine(w) (C_in):

    W'_{bkl}  = W_{kl} * s_{bkl}[None, :] / sqrt(C)                       (modulation)
    W''_{bkl} = W'_{bkl} * rsqrt(sum_in W'_{bkl}^2 + 1e-8)[:, None]        (demodulation)
    h_{l+1}   = leaky_relu(h_l @ W''_{bkl}^T + b_{kl}, 0.2) * sqrt(2)

The pseudo-depth is tapped after ``depth_layer`` layers (after layer depth_layer - 1):

    d_{bk} = h_{depth_layer} @ u_k + c_k

where u_k (C) and c_k are the to_depth weight and bias (zeros for the background, whose depth
is 0). :func:`modulated_weights` folds modulation and demodulation into per-(sample, class,
layer) weights; :func:`grouped_mlp` runs the layers on those.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def modulated_weights(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Fold styles into the weights: ``weight`` (K, L, C_out, C_in), ``styles`` (B, K, L, C_in)
    -> effective weights (B, K, L, C_out, C_in), modulated by s / sqrt(C_in) and demodulated."""
    w = weight.unsqueeze(0) * styles.unsqueeze(-2) / math.sqrt(weight.shape[-1])
    return w * torch.rsqrt(w.pow(2).sum(-1, keepdim=True) + 1e-8)


def grouped_mlp_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    depth_weight: torch.Tensor,
    depth_bias: torch.Tensor,
    depth_layer: int,
    detach_texture: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The grouped MLP in plain PyTorch (the mathematical truth).

    x: (Bx, Kx, P, C) inputs, broadcast over samples (Bx = 1 or B) and classes (Kx = 1 or K);
    weight: (B, K, L, C, C) effective weights from :func:`modulated_weights`; bias: (K, L, C);
    depth_weight: (K, C); depth_bias: (K,). ``detach_texture`` stops the gradient of the layers
    after the depth tap from reaching the layers before it.
    Returns h (B, K, P, C), the last layer's activations, and depth (B, K, P).
    """
    B, K, L = weight.shape[:3]
    h = x.expand(B, K, *x.shape[2:])
    depth = None
    for layer in range(L):
        h = torch.matmul(h, weight[:, :, layer].transpose(-1, -2)) + bias[None, :, layer, None, :]
        h = F.leaky_relu(h, 0.2) * SQRT2
        if layer == depth_layer - 1:
            depth = torch.matmul(h, depth_weight[None, :, :, None]).squeeze(-1) + depth_bias[None, :, None]
            if detach_texture and layer < L - 1:
                h = h.detach()
    return h, depth


def grouped_mlp(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    depth_weight: torch.Tensor,
    depth_bias: torch.Tensor,
    depth_layer: int,
    detach_texture: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`grouped_mlp_reference`'s maths with the backend chosen by :mod:`.backend`."""
    return grouped_mlp_reference(x, weight, bias, depth_weight, depth_bias, depth_layer, detach_texture)
