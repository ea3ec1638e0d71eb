"""The SemanticStyleGAN generator: mapping network, local generators, fusion and render net.

Module and parameter names are those of the official ``SemanticGenerator`` so that released
``g_ema`` state dicts load with ``strict=True``; the call convention of its ``forward`` is the
official one too. The K local generators run as one grouped MLP
(:func:`ssgan.kernels.grouped_mlp`) and their fusion as one GEMM (:func:`ssgan.kernels.fuse`),
whatever the backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssgan.kernels import fuse, grouped_mlp, modulated_weights
from ssgan.model import latents as L
from ssgan.model.config import SSGANConfig
from ssgan.model.layers import (
    EqualLinear,
    FixedStyledConv,
    PixelNorm,
    PositionEmbedding,
    StyledConv,
    ToRGB,
    fixed_modulated_weight,
)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype active for ``device``'s type, or None when autocast is off."""
    if not torch.is_autocast_enabled(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def stacked_head(heads: Sequence[ToRGB]) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective weights (n, out, in) and biases (n, out) of n 1×1 ToRGB heads, computed together."""
    conv = heads[0].conv
    weight = torch.stack([h.conv.weight for h in heads])
    modulation = torch.stack([h.conv.modulation for h in heads])
    weight = fixed_modulated_weight(weight, modulation, conv.scale, conv.demodulate)
    return weight.flatten(2), torch.stack([h.bias.flatten() for h in heads])


def mapping_network(cfg: SSGANConfig) -> nn.Sequential:
    """The mapping network z → w: PixelNorm, then ``n_mlp`` equalized linear layers D → D with
    leaky ReLU and learning-rate multiplier ``lr_mlp`` (shared by both architectures)."""
    return nn.Sequential(
        PixelNorm(),
        *(EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activation="fused_lrelu")
          for _ in range(cfg.n_mlp)),
    )


class StyleCodes:
    """What both generators do with codes the same way (they provide ``style`` and ``mix_styles``):
    :meth:`mapping` and :meth:`layout`."""

    style: nn.Module
    mix_styles: Callable[..., torch.Tensor]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) → w (N, D)."""
        return self.style(z)

    def layout(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False, truncation: float = 1.0,
               truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """z or w codes → expanded W+: mapping (unless ``input_is_latent``), truncation, layout."""
        if not isinstance(styles, (list, tuple)):
            raise TypeError("styles must be a list of tensors, e.g. G([z]) (official convention)")
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        return self.mix_styles(L.truncate(styles, truncation, truncation_latent))


class LocalGenerator(nn.Module):
    """Parameters of one class's per-pixel generator: L modulated 1×1 layers C→C, ``to_feat``
    (C→F) and, for every class but the background, ``to_depth`` (C→1)."""

    def __init__(self, cfg: SSGANConfig, use_depth: bool):
        super().__init__()
        C = cfg.local_channel
        self.linears = nn.ModuleList(StyledConv(C, C, cfg.style_dim) for _ in range(cfg.local_layers))
        self.to_feat = ToRGB(C, cfg.coarse_channel)
        if use_depth:
            self.to_depth = ToRGB(C, 1)


def layer_noise(buffers: nn.Module, n_layers: int, noise: Sequence[torch.Tensor | None] | None,
                randomize_noise: bool) -> list[torch.Tensor | None]:
    """Per-conv noise of a synthesis net: the given list (``n_layers`` long), fresh noise (None
    each) when ``randomize_noise``, else the stored buffers ``buffers.noise_<i>``."""
    if noise is not None:
        if len(noise) != n_layers:
            raise ValueError(f"noise must list {n_layers} tensors (one per synthesis conv)")
        return list(noise)
    if randomize_noise:
        return [None] * n_layers
    return [getattr(buffers, f"noise_{i}") for i in range(n_layers)]


class RenderNet(nn.Module):
    """StyleGAN2-like synthesis from the fused F×S×S feature map to RGB and segmentation logits."""

    def __init__(self, cfg: SSGANConfig):
        super().__init__()
        self.coarse_size = cfg.coarse_size
        self.min_size = cfg.min_feat_size
        n_stages = int(math.log2(cfg.size)) - int(math.log2(cfg.min_feat_size))
        self.n_layers = 2 * n_stages
        self.convs = nn.ModuleList()
        self.noises = nn.Module()
        self.to_rgbs = nn.ModuleList()
        self.to_segs = nn.ModuleList()
        in_channel = cfg.coarse_channel
        for i in range(n_stages):
            res = cfg.min_feat_size * 2 ** (i + 1)
            out_channel = cfg.channels(res)
            if res // 2 == cfg.coarse_size:
                in_channel += cfg.coarse_channel
            self.convs.append(FixedStyledConv(in_channel, out_channel, 3, upsample=True))
            self.convs.append(FixedStyledConv(out_channel, out_channel, 3))
            self.noises.register_buffer(f"noise_{2 * i}", torch.randn(1, 1, res, res))
            self.noises.register_buffer(f"noise_{2 * i + 1}", torch.randn(1, 1, res, res))
            self.to_rgbs.append(ToRGB(out_channel, 3))
            self.to_segs.append(ToRGB(out_channel, cfg.seg_dim))
            in_channel = out_channel

    def get_noise(self, noise: Sequence[torch.Tensor | None] | None,
                  randomize_noise: bool) -> list[torch.Tensor | None]:
        """Per-layer noise: the given list, fresh noise (None) or the stored buffers."""
        return layer_noise(self.noises, self.n_layers, noise, randomize_noise)

    def forward(self, feat: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True,
                skip_seg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        noise = self.get_noise(noise, randomize_noise)
        x = F.adaptive_avg_pool2d(feat, (self.min_size, self.min_size))
        rgb = seg = None
        for i in range(len(self.to_rgbs)):
            if x.shape[2] == self.coarse_size:
                x = torch.cat((x, feat), 1)
            x = self.convs[2 * i](x, noise[2 * i])
            x = self.convs[2 * i + 1](x, noise[2 * i + 1])
            rgb = self.to_rgbs[i](x, rgb)
            seg = self.to_segs[i](x, seg)
            if skip_seg is not None and seg.shape[2] == skip_seg.shape[2]:
                seg = seg + skip_seg
        return rgb, seg


class Synthesis(NamedTuple):
    """What the generator produces from expanded W+ codes."""

    rgb: torch.Tensor  # (B, 3, size, size), roughly in [-1, 1]
    seg: torch.Tensor | None  # (B, K, size, size) segmentation logits; None: StyleGAN2 (no masks)
    coarse: torch.Tensor | None  # (B, K, S, S) coarse mask 2m − 1; None: StyleGAN2
    depth: torch.Tensor | None  # (B, K, S, S) pseudo-depths (zeros for the background); None: StyleGAN2
    latent: torch.Tensor  # (B, K·L, D) the expanded codes used (StyleGAN2: (B, n_latent, D))


class SemanticGenerator(StyleCodes, nn.Module):
    """SemanticStyleGAN's generator.

    Typed API: :meth:`mapping`, :meth:`mean_latent`, :meth:`layout` and :meth:`synthesize`.
    Official API: ``G(styles, …)`` (see :meth:`forward`), ``G.style``, ``G.n_latent``,
    ``G.n_latent_expand``, ``G.mix_styles``, ``G.expand_latents``.
    """

    def __init__(self, cfg: SSGANConfig):
        super().__init__()
        self.config = cfg
        self.size = cfg.size
        self.style_dim = cfg.style_dim
        self.n_local = self.seg_dim = cfg.seg_dim
        self.local_layers = cfg.local_layers
        self.depth_layers = cfg.depth_layers
        self.base_layers = cfg.base_layers
        self.coarse_size = cfg.coarse_size
        self.transparent_dims = list(cfg.transparent_dims)
        self.n_latent = cfg.n_latent
        self.n_latent_expand = cfg.n_latent_expand
        self.mixing_groups = cfg.seg_dim  # style mixing draws one choice per class

        self.pos_embed = PositionEmbedding(2, cfg.local_channel, n_freqs=int(math.log2(cfg.size)))
        # the default grid's Fourier features never change: computed once, not every forward
        self.register_buffer("fourier_features", self.pos_embed.features(self.make_coords(1, "cpu")),
                             persistent=False)
        self.local_nets = nn.ModuleList(LocalGenerator(cfg, use_depth=k > 0) for k in range(cfg.seg_dim))
        self.render_net = RenderNet(cfg)
        self.style = mapping_network(cfg)
        transparent = torch.zeros(cfg.seg_dim)
        transparent[list(cfg.transparent_dims)] = 1
        self.register_buffer("transparent", transparent, persistent=False)

    # ----- latent codes (mapping, layout: StyleCodes) --------------------------------------
    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean w over ``n`` random z, (1, D): the truncation centre."""
        device = self.transparent.device
        z = torch.randn(n, self.style_dim, device=device, generator=generator)
        return self.mapping(z).mean(0, keepdim=True)

    def expand_latents(self, latent: torch.Tensor) -> torch.Tensor:
        """Compact W+ (N, n_latent, D) → expanded W+ (N, K·L, D)."""
        return L.expand_latents(latent, self.config)

    def mix_styles(self, styles: Sequence[torch.Tensor],
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Mapped codes → expanded W+, with style mixing for two codes (see :func:`latents.mix_styles`)."""
        return L.mix_styles(styles, self.config, generator)

    def mixing_choice(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """Style-mixing draws (n, K, 1) (see :func:`latents.mixing_choice`); zeros (n,
        :attr:`mixing_groups`, 1): no mixing."""
        return L.mixing_choice(n, self.config, generator, device)

    def mix_with_choice(self, w1: torch.Tensor, w2: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Two mapped codes and :meth:`mixing_choice`'s draws → expanded W+."""
        return L.mix_with_choice(w1, w2, choice, self.config)

    # ----- synthesis ----------------------------------------------------------------------
    def local_features(self, latent: torch.Tensor, coords: Sequence[torch.Tensor] | None = None,
                       classes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All local generators at once: expanded W+ → hidden h (B, K, P, C) and depth (B, K, P).
        ``classes``: only those local generators, in that order (K' of them); each one's outputs are
        its slice of the full call's, up to float rounding (the editor caches them per class).

        Under autocast (bf16 training) the styles, modulation and demodulation run in fp32 and
        only the MLP's input and effective weights are cast to the autocast dtype (the kernels
        accumulate in fp32); h and depth come back in that dtype."""
        amp = _autocast_dtype(latent.device)
        if amp is not None:  # the kernels are custom ops, which autocast does not see: decide here
            with torch.autocast(latent.device.type, enabled=False):
                x, weight, bias, depth_w, depth_b = self._local_inputs(latent.float(), coords, classes)
            return grouped_mlp(x.to(amp), weight.to(amp), bias, depth_w, depth_b,
                               self.config.depth_layers, self.config.detach_texture)
        x, weight, bias, depth_w, depth_b = self._local_inputs(latent, coords, classes)
        return grouped_mlp(x, weight, bias, depth_w, depth_b, self.config.depth_layers,
                           self.config.detach_texture)

    def _local_inputs(self, latent: torch.Tensor, coords: Sequence[torch.Tensor] | None,
                      classes: Sequence[int] | None = None):
        """The grouped MLP's operands: x (1|B, 1|K, P, C), effective weights (B, K, L, C, C),
        biases (K, L, C), depth head (K, C) and (K,)."""
        cfg, nets = self.config, self.local_nets
        B, K, Lyr, C = latent.shape[0], cfg.seg_dim, cfg.local_layers, cfg.local_channel
        S = cfg.coarse_size
        layers = [lin for net in nets for lin in net.linears]
        aff = layers[0].conv.modulation
        aff_w = torch.stack([m.conv.modulation.weight for m in layers]).view(K, Lyr, C, -1)
        aff_b = torch.stack([m.conv.modulation.bias for m in layers]).view(K, Lyr, C)
        w = latent.view(B, K, Lyr, -1)
        styles = torch.einsum("bkld,klcd->bklc", w, aff_w) * aff.scale + aff_b * aff.lr_mul
        weight = torch.stack([m.conv.weight.view(C, C) for m in layers]).view(K, Lyr, C, C)
        bias = torch.stack([m.activate.bias for m in layers]).view(K, Lyr, C)
        depth_w, depth_b = latent.new_zeros(1, C), latent.new_zeros(1)  # the background's depth is 0
        if K > 1:
            w, b = stacked_head([n.to_depth for n in nets[1:]])
            depth_w, depth_b = torch.cat([depth_w, w.view(K - 1, C)]), torch.cat([depth_b, b.view(K - 1)])
        if coords is None:
            x = self.pos_embed.project(self.fourier_features.to(latent.dtype)).view(1, 1, C, S * S)
        else:
            if len(coords) != K:
                raise ValueError(f"coords must list one (B, 2, {S}, {S}) tensor per class ({K})")
            x = torch.stack([self.pos_embed(c) for c in coords], 1).view(B, K, C, S * S)
        if classes is not None:
            index = torch.as_tensor(list(classes), dtype=torch.long, device=latent.device)
            weight, styles, bias = weight[index], styles[:, index], bias[index]
            depth_w, depth_b = depth_w[index], depth_b[index]
            x = x if x.shape[1] == 1 else x[:, index]
        return x.transpose(-1, -2), modulated_weights(weight, styles), bias, depth_w, depth_b

    def make_coords(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """(batch, 2, S, S) coordinates in [−1, 1]: channel 0 is x (along width), channel 1 is y."""
        S = self.config.coarse_size
        t = torch.linspace(-1, 1, S, device=device)
        grid = torch.stack([t.view(1, S).expand(S, S), t.view(S, 1).expand(S, S)])
        return grid[None].expand(batch, -1, -1, -1)

    def synthesize(self, latent: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None,
                   randomize_noise: bool = True, composition_mask: torch.Tensor | None = None,
                   coords: Sequence[torch.Tensor] | None = None,
                   local: tuple[torch.Tensor, torch.Tensor] | None = None) -> Synthesis:
        """Expanded W+ (B, K·L, D) → :class:`Synthesis`.

        composition_mask: (B, K) of 0/1 to drop classes; noise: one tensor per render-net conv
        (or None for fresh noise when ``randomize_noise``, else the stored buffers); ``local``:
        :meth:`local_features` of these codes already computed (h, depth), e.g. partly cached."""
        cfg = self.config
        B, S = latent.shape[0], cfg.coarse_size
        h, depth = self.local_features(latent, coords) if local is None else local
        if depth.dtype in (torch.float16, torch.bfloat16):  # softmax, composition mask and
            depth = depth.float()  # transparency in fp32 under autocast; float64 stays float64
        nets = self.local_nets
        feat_w, feat_b = stacked_head([n.to_feat for n in nets])
        if composition_mask is not None and composition_mask.shape != (B, cfg.seg_dim):
            raise ValueError(f"composition_mask must be (B, K) = ({B}, {cfg.seg_dim}), "
                             f"got {tuple(composition_mask.shape)}")
        transparent = self.transparent if cfg.transparent_dims else None
        feat, m = fuse(h, depth, feat_w, feat_b, composition_mask, transparent)
        feat = feat.view(B, S, S, -1).permute(0, 3, 1, 2)
        coarse = (2 * m - 1).view(B, cfg.seg_dim, S, S)
        rgb, seg = self.render_net(feat, noise, randomize_noise, coarse if cfg.residual_refine else None)
        return Synthesis(rgb, seg, coarse, depth.view(B, cfg.seg_dim, S, S), latent)

    def forward(self, styles: Sequence[torch.Tensor], coords: Sequence[torch.Tensor] | None = None,
                truncation: float = 1, truncation_latent: torch.Tensor | None = None,
                noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = True,
                input_is_latent: bool = False, composition_mask: torch.Tensor | None = None,
                return_latents: bool = False, return_coarse: bool = False, return_all: bool = False):
        """The official call: ``styles`` is a list of one z/w tensor (two for style mixing).

        Returns (rgb, seg); with ``return_latents`` (rgb, latent); with ``return_coarse``
        (rgb, coarse); with ``return_all`` (rgb, seg, coarse, depths, latent), depths a list of K
        (B, 1, S, S) tensors."""
        latent = self.layout(styles, input_is_latent, truncation, truncation_latent)
        out = self.synthesize(latent, noise, randomize_noise, composition_mask, coords)
        if return_latents:
            return out.rgb, out.latent
        if return_coarse:
            return out.rgb, out.coarse
        if return_all:
            return out.rgb, out.seg, out.coarse, list(out.depth.split(1, 1)), out.latent
        return out.rgb, out.seg
