"""Depth-softmax fusion of the local generators' outputs, with the to_feat projection.

With h_k (P x C) the last hidden activations of class k, d_k (P) its pseudo-depth, V_k (F x C)
and e_k (F) its to_feat effective weight and bias:

    m        = softmax_k(d)                                      (per pixel)
    m        = m * mask / (sum_k m * mask + 1e-8)                (if a composition mask is given)
    w        = m (1 - t) / (sum_k m (1 - t) + 1e-8) + m t        (if some classes are transparent, t in {0,1}^K)
    feature  = sum_k w_k (h_k V_k^T + e_k)
             = [w_1 h_1, ..., w_K h_K] (P x K·C) @ [V_1 ... V_K]^T (K·C x F) + w @ e

The second form is a single GEMM that never builds the K x F x P tensor. The coarse mask
returned is m (after the composition mask, before the transparency re-weighting); the model
rescales it to 2m - 1.
"""

from __future__ import annotations

import torch


def fusion_weights(
    depth: torch.Tensor, composition_mask: torch.Tensor | None, transparent: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """depth (B, K, P) -> (w, m): the per-class feature weights and the coarse mask, both (B, K, P).

    composition_mask: (B, K) of 0/1 or None; transparent: (K,) of 0/1 or None (None when no class
    is transparent: then w = m exactly)."""
    m = torch.softmax(depth, dim=1)
    if composition_mask is not None:
        m = m * composition_mask[:, :, None].to(m.dtype)
        m = m / (m.sum(1, keepdim=True) + 1e-8)
    if transparent is None:
        return m, m
    t = transparent.to(m.dtype)[None, :, None]
    opaque = m * (1 - t)
    w = opaque / (opaque.sum(1, keepdim=True) + 1e-8) + m * t
    return w, m


def fuse_reference(
    h: torch.Tensor,
    depth: torch.Tensor,
    feat_weight: torch.Tensor,
    feat_bias: torch.Tensor,
    composition_mask: torch.Tensor | None = None,
    transparent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fusion in plain PyTorch, the way the official model computes it (per-class feature maps).

    h: (B, K, P, C); depth: (B, K, P); feat_weight: (K, F, C); feat_bias: (K, F).
    Returns feature (B, P, F) and the coarse mask m (B, K, P).
    """
    w, m = fusion_weights(depth, composition_mask, transparent)
    feats = torch.matmul(h, feat_weight.transpose(-1, -2)[None]) + feat_bias[None, :, None, :]
    return (w.unsqueeze(-1) * feats).sum(1), m


def fuse(
    h: torch.Tensor,
    depth: torch.Tensor,
    feat_weight: torch.Tensor,
    feat_bias: torch.Tensor,
    composition_mask: torch.Tensor | None = None,
    transparent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fuse_reference`'s maths with the backend chosen by :mod:`.backend`."""
    return fuse_reference(h, depth, feat_weight, feat_bias, composition_mask, transparent)
