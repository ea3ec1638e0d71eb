"""The StyleGAN2 baseline (``--arch stylegan2``): a mapping network and a modulated synthesis net
of the same width table as the render net (:meth:`SSGANConfig.channels`), built from the same
layers, with the typed API of :class:`~ssgan.model.generator.SemanticGenerator` (``mapping``,
``mean_latent``, ``layout``, ``synthesize`` …) so that training, sampling, inversion, the encoder
and attribute directions work on either.

Synthesis (Karras et al. 2020, config F less the output skips' resolution-dependent details): a
learned 4×4 constant; a modulated 3×3 conv at 4×4; per resolution 8 … size an upsampling
modulated 3×3 conv and a modulated 3×3 conv, each with noise, bias and leaky ReLU; a modulated
1×1 ToRGB (no demodulation) per resolution whose outputs are summed after ×2 upsampling (skip
generator). Each conv and ToRGB has its own affine A_j: w_j → s_j (bias 1), so W+ holds
n_latent = 2·log2(size) − 2 codes, in the order conv 4×4, ToRGB 4×4, then per resolution conv
up, conv, ToRGB. There are no masks: :class:`~ssgan.model.generator.Synthesis` carries
``seg = coarse = depth = None``.

Style mixing draws, per sample, the number c ∈ [1, n_latent) of trailing codes taken from the
second code (c = 0: no mixing), as StyleGAN2's crossover point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ssgan.model.config import SSGANConfig
from ssgan.model.generator import StyleCodes, Synthesis, layer_noise, mapping_network
from ssgan.model.layers import EqualLinear, FixedStyledConv, ToRGB


class StyledLayer(nn.Module):
    """A synthesis layer (:class:`FixedStyledConv` or :class:`ToRGB`) and its affine A: w → s
    (bias initialised to 1), which modulates it per sample."""

    def __init__(self, layer: nn.Module, in_channel: int, style_dim: int):
        super().__init__()
        self.layer = layer
        self.affine = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``extra``: the noise of a conv, the skip of a ToRGB."""
        return self.layer(x, extra, style=self.affine(w))


class StyleGAN2Generator(StyleCodes, nn.Module):
    """StyleGAN2's generator for ``cfg`` (module doc); ``cfg.arch`` must be ``stylegan2``."""

    def __init__(self, cfg: SSGANConfig):
        super().__init__()
        if cfg.semantic:
            raise ValueError("StyleGAN2Generator needs a configuration with arch='stylegan2'")
        self.config = cfg
        self.size, self.style_dim = cfg.size, cfg.style_dim
        self.n_latent = self.n_latent_expand = cfg.n_latent
        self.mixing_groups = 1  # one crossover point per sample
        D, ch = cfg.style_dim, cfg.channels
        self.style = mapping_network(cfg)
        self.input = nn.Parameter(torch.randn(1, ch(4), 4, 4))
        self.conv1 = StyledLayer(FixedStyledConv(ch(4), ch(4), 3), ch(4), D)
        self.to_rgb1 = StyledLayer(ToRGB(ch(4), 3), ch(4), D)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        self.noises.register_buffer("noise_0", torch.randn(1, 1, 4, 4))
        in_channel = ch(4)
        for i in range(3, int(math.log2(cfg.size)) + 1):
            res, out = 2**i, ch(2**i)
            self.convs.append(StyledLayer(FixedStyledConv(in_channel, out, 3, upsample=True), in_channel, D))
            self.convs.append(StyledLayer(FixedStyledConv(out, out, 3), out, D))
            self.to_rgbs.append(StyledLayer(ToRGB(out, 3), out, D))
            for j in (len(self.convs) - 1, len(self.convs)):
                self.noises.register_buffer(f"noise_{j}", torch.randn(1, 1, res, res))
            in_channel = out
        self.n_layers = 1 + len(self.convs)

    # ----- latent codes (the same API as SemanticGenerator's; mapping, layout: StyleCodes) -------
    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean w over ``n`` random z, (1, D): the truncation centre."""
        z = torch.randn(n, self.style_dim, device=self.input.device, generator=generator)
        return self.mapping(z).mean(0, keepdim=True)

    def expand_latents(self, latent: torch.Tensor) -> torch.Tensor:
        """W+ (N, n_latent, D) as it is (StyleGAN2 has one layout); other shapes raise ``ValueError``."""
        if latent.ndim != 3 or latent.shape[1] != self.n_latent:
            raise ValueError(f"latent must be (N, {self.n_latent}, {self.style_dim}), "
                             f"got {tuple(latent.shape)}")
        return latent

    def mixing_choice(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """Per sample, the number of trailing codes from the second code, (n, 1, 1) in [1, n_latent)."""
        return torch.randint(1, self.n_latent, (n, 1, 1), generator=generator, device=device)

    def mix_with_choice(self, w1: torch.Tensor, w2: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """W+ (N, n_latent, D): the last ``choice`` codes from w2, the others from w1 (zeros: w1's)."""
        j = torch.arange(self.n_latent, device=w1.device).view(1, -1, 1)
        return torch.where(j >= self.n_latent - choice, w2[:, None], w1[:, None])

    def mix_styles(self, styles: Sequence[torch.Tensor],
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Mapped codes → W+: one (N, D) code repeated, one (N, n_latent, D) as is, two mixed at a
        random crossover (:meth:`mixing_choice`), more stacked one per code."""
        if len(styles) == 2:
            w1, w2 = styles
            return self.mix_with_choice(w1, w2, self.mixing_choice(w1.shape[0], generator, w1.device))
        latent = styles[0] if len(styles) == 1 else torch.stack(list(styles), 1)
        if latent.ndim < 3:
            latent = latent.unsqueeze(1).expand(-1, self.n_latent, -1)
        return self.expand_latents(latent)

    # ----- synthesis -----------------------------------------------------------------------------
    def synthesize(self, latent: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None,
                   randomize_noise: bool = True, composition_mask: torch.Tensor | None = None,
                   coords: Sequence[torch.Tensor] | None = None,
                   local: tuple[torch.Tensor, torch.Tensor] | None = None) -> Synthesis:
        """W+ (B, n_latent, D) → :class:`Synthesis` with ``seg = coarse = depth = None``. ``noise``:
        one tensor per conv (or None for fresh noise when ``randomize_noise``, else the stored
        buffers). The per-class arguments of SemanticGenerator (``composition_mask``, ``coords``,
        ``local``) have no meaning here and must be None."""
        if composition_mask is not None or coords is not None or local is not None:
            raise ValueError("a StyleGAN2 generator has no classes: composition_mask, coords and local "
                             "must be None")
        latent = self.expand_latents(latent)
        noise = layer_noise(self.noises, self.n_layers, noise, randomize_noise)
        x = self.input.expand(latent.shape[0], -1, -1, -1)
        x = self.conv1(x, latent[:, 0], noise[0])
        rgb = self.to_rgb1(x, latent[:, 1])
        for i, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * i](x, latent[:, 2 * i + 1], noise[2 * i + 1])
            x = self.convs[2 * i + 1](x, latent[:, 2 * i + 2], noise[2 * i + 2])
            rgb = to_rgb(x, latent[:, 2 * i + 3], rgb)
        return Synthesis(rgb, None, None, None, latent)

    def forward(self, styles: Sequence[torch.Tensor], truncation: float = 1,
                truncation_latent: torch.Tensor | None = None,
                noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = True,
                input_is_latent: bool = False, return_latents: bool = False):
        """``G([z])`` → (rgb, None), or (rgb, latent) with ``return_latents`` (the shape of
        SemanticGenerator's (rgb, seg))."""
        latent = self.layout(styles, input_is_latent, truncation, truncation_latent)
        out = self.synthesize(latent, noise, randomize_noise)
        return (out.rgb, out.latent) if return_latents else (out.rgb, None)
