"""The dual-branch discriminator: an image branch and a segmentation branch, summed at 4×4 (the
StyleGAN2 baseline's, ``arch="stylegan2"``: the image branch alone)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ssgan.model.config import SSGANConfig
from ssgan.model.layers import ConvLayer, EqualLinear, ResBlock


def _branch(cfg: SSGANConfig, in_channel: int) -> nn.Sequential:
    convs: list[nn.Module] = [ConvLayer(in_channel, cfg.channels(cfg.size), 1)]
    ch = cfg.channels(cfg.size)
    for i in range(int(math.log2(cfg.size)), 2, -1):
        out = cfg.channels(2 ** (i - 1))
        convs.append(ResBlock(ch, out))
        ch = out
    return nn.Sequential(*convs)


class DualBranchDiscriminator(nn.Module):
    """D(img, seg=None) → (B, 1) realness logits; the seg branch is skipped when ``seg`` is None.
    For ``cfg.arch == "stylegan2"`` there is no seg branch (``convs_seg`` is None): an image-only D."""

    stddev_group = 4

    def __init__(self, cfg: SSGANConfig):
        super().__init__()
        self.config = cfg
        self.convs_img = _branch(cfg, 3)
        self.convs_seg = _branch(cfg, cfg.seg_dim) if cfg.semantic else None
        ch = cfg.channels(4)
        self.final_conv = ConvLayer(ch + 1, ch, 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch * 4 * 4, ch, activation="fused_lrelu"),
            EqualLinear(ch, 1),
        )

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append one channel: the std over groups of min(4, B) samples, averaged over C, H, W."""
        B, C, H, W = x.shape
        group = min(B, self.stddev_group)
        if B % group:
            raise ValueError(f"the discriminator needs a batch divisible by {group}, got {B}")
        s = x.view(group, -1, 1, C, H, W)
        s = torch.sqrt(s.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        return torch.cat([x, s.repeat(group, 1, H, W)], 1)

    def forward(self, img: torch.Tensor, seg: torch.Tensor | None = None) -> torch.Tensor:
        out = self.convs_img(img)
        if seg is not None:
            if self.convs_seg is None:
                raise ValueError("this discriminator is image-only (arch stylegan2): call D(img)")
            out = out + self.convs_seg(seg)
        out = self.final_conv(self.minibatch_stddev(out))
        return self.final_linear(out.reshape(img.shape[0], -1))
