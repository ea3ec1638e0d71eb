"""A ReStyle-style encoder into the compact W+ (Alaluf et al. 2021, "ReStyle"), for SemanticStyleGAN.

**Iterative refinement** (:func:`encode`). The codes start at the mean latent w̄ (the mean of
mapping(z) over ``mean_samples`` z, as :func:`ssgan.edit.inversion.invert_latents` starts) repeated
over the n_latent = base + 2K compact codes, with ŷ₀ = G(w₀). Each pass t = 0 … N−1 feeds the
target image x concatenated with the current reconstruction (6 channels) to the encoder E, which
predicts a residual on every compact code:

    w_{t+1} = w_t + σ_w ⊙ E(x ⊕ ŷ_t),     ŷ_{t+1} = G(w_{t+1})     (noise fixed: G's stored buffers)

σ_w (D,) is the per-dimension standard deviation of mapping(z), so the network's outputs are in
units of the latent's own spread. N = 5 passes by default.

**Network** (:class:`LatentEncoder`). Inputs larger than ``max_input`` px are average-pooled to it.
A 3×3 stem (6 → c₀) at the input resolution r₀, then one stage per halving down to 4×4; stage i
holds ``blocks`` residual blocks, the first one strided,

    h ← (conv₃ₓ₃(lrelu(conv₃ₓ₃^{stride}(lrelu(h)))) + skip(h)) / √2,    skip = 1×1 conv ∘ avg-pool₂,

with c_i = min(``channel_max``, ``width``·2^i) channels. The 4×4×c map is flattened, a shared
layer maps it to ``hidden`` features φ = lrelu(A·flat + a), and a *per-code head* gives each of
the n_latent codes its own linear map: Δ_j = B_j φ + b_j (B: (n_latent, D, hidden)), initialised
small (×0.1) so that the first passes stay near w̄. Widths are set from the generator's
configuration by :meth:`EncoderConfig.for_generator` so that one pass costs well under one
generator forward (:func:`pass_flops`).

**Files** (:func:`save_encoder`, :func:`load_encoder`): an ssgan safetensors checkpoint
(:func:`ssgan.checkpoint.save_checkpoint`, written atomically) holding the generator's
configuration, the encoder's tensors as ``extra.encoder.*``, its Adam state in the ``g_optim``
section (for ``--resume``), and in ``meta``: ``kind = "ssgan-encoder"``, the encoder's
configuration, the training step and options, and ``generator_sha256``, the digest of every
parameter and buffer of the generator it was trained against
(:func:`ssgan.checkpoint.param_digest`). Loading it against another generator is refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ssgan.checkpoint import CheckpointError, load_checkpoint, param_digest, save_checkpoint
from ssgan.checkpoint.errors import one_line
from ssgan.checkpoint.load import wider_than_state
from ssgan.edit import editing as E
from ssgan.model.config import SSGANConfig
from ssgan.model.generator import SemanticGenerator, Synthesis

KIND = "ssgan-encoder"
PREFIX = "encoder."


class EncoderError(ValueError):
    """An encoder file that cannot be used here; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of :class:`LatentEncoder` (module docstring) and its default number of passes."""

    width: int = 32
    channel_max: int = 256
    blocks: int = 1
    hidden: int = 512
    max_input: int = 256
    iters: int = 5
    mean_samples: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.width, self.channel_max, self.blocks, self.hidden, self.iters, self.mean_samples) < 1:
            raise ValueError("encoder width, channel_max, blocks, hidden, iters and mean_samples "
                             "must be >= 1")
        if self.max_input < 8 or self.max_input & (self.max_input - 1):
            raise ValueError(f"encoder max_input={self.max_input} must be a power of two >= 8")

    @classmethod
    def for_generator(cls, cfg: SSGANConfig, **overrides: Any) -> EncoderConfig:
        """Defaults sized for ``cfg``: width 16 and 256 channels at most for models up to 64 px,
        width 32 and 512 channels above (a 256 px pass ≈ 4 % of the generator's forward)."""
        small = cfg.size <= 64
        base = dict(width=16 if small else 32, channel_max=256 if small else 512,
                    hidden=256 if small else 512)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class ResBlock(nn.Module):
    """h ← (conv(lrelu(conv_stride(lrelu(h)))) + skip(h)) / √2 (module docstring)."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if (cin != cout or down) else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(h, 0.2)), 0.2))
        s = h
        if self.down:
            s = F.avg_pool2d(s, 2)
        if self.skip is not None:
            s = self.skip(s)
        return (y + s) / math.sqrt(2)


class LatentEncoder(nn.Module):
    """E(x ⊕ ŷ) → residual (N, n_latent, D) in units of σ_w, times σ_w (module docstring).

    Buffers ``w_mean`` (D,) and ``w_std`` (D,) come from the generator (:meth:`from_generator`) and
    are saved with the weights, so the encoder starts from the same w̄ wherever it is loaded."""

    def __init__(self, gcfg: SSGANConfig, cfg: EncoderConfig):
        super().__init__()
        self.gcfg, self.cfg = gcfg, cfg
        self.n_latent, self.style_dim = gcfg.n_latent, gcfg.style_dim
        self.in_size = min(gcfg.size, cfg.max_input)
        n_stages = int(math.log2(self.in_size)) - 2  # down to 4×4

        def ch(i: int) -> int:
            return min(cfg.channel_max, cfg.width * 2 ** i)

        self.stem = nn.Conv2d(6, ch(0), 3, padding=1)
        blocks: list[nn.Module] = []
        for i in range(n_stages):
            for b in range(cfg.blocks):
                blocks.append(ResBlock(ch(i) if b == 0 else ch(i + 1), ch(i + 1), down=b == 0))
        self.blocks = nn.Sequential(*blocks)
        flat = ch(n_stages) * 16
        self.shared = nn.Linear(flat, cfg.hidden)
        self.head_weight = nn.Parameter(torch.randn(self.n_latent, self.style_dim, cfg.hidden)
                                        * (0.1 / math.sqrt(cfg.hidden)))
        self.head_bias = nn.Parameter(torch.zeros(self.n_latent, self.style_dim))
        self.register_buffer("w_mean", torch.zeros(self.style_dim))
        self.register_buffer("w_std", torch.ones(self.style_dim))

    @classmethod
    @torch.no_grad()
    def from_generator(cls, G: SemanticGenerator, cfg: EncoderConfig | None = None) -> LatentEncoder:
        """A fresh encoder for G, on G's device, with G's w̄ and σ_w (``cfg.mean_samples`` z, ``cfg.seed``)."""
        cfg = cfg or EncoderConfig.for_generator(G.config)
        device = next(G.parameters()).device
        enc = cls(G.config, cfg).to(device)
        gen = torch.Generator(device).manual_seed(cfg.seed)
        w = G.mapping(torch.randn(cfg.mean_samples, G.style_dim, device=device, generator=gen))
        enc.w_mean.copy_(E.mean_w(G, cfg.seed, cfg.mean_samples)[0])
        enc.w_std.copy_(w.std(0).clamp_min(1e-4))
        return enc

    def mean_latent(self, n: int) -> torch.Tensor:
        """w̄ repeated into (n, n_latent, D) compact W+ codes: the starting point."""
        return self.w_mean.view(1, 1, -1).expand(n, self.n_latent, -1).clone()

    def forward(self, image: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Residual Δw (N, n_latent, D) for targets and current reconstructions (N, 3, S, S) in [−1, 1]."""
        x = torch.cat([image, recon.to(image.dtype)], 1)
        if x.shape[-1] != self.in_size:
            x = F.adaptive_avg_pool2d(x, self.in_size)
        h = self.blocks(self.stem(x))
        phi = F.leaky_relu(self.shared(h.flatten(1)), 0.2)
        delta = torch.einsum("nh,jdh->njd", phi, self.head_weight) + self.head_bias
        return delta * self.w_std


def synthesize(G: SemanticGenerator, latent: torch.Tensor) -> Synthesis:
    """G(compact W+) with the stored noise (gradients flow when enabled): the encoder's renderer."""
    return G.synthesize(G.expand_latents(latent), randomize_noise=False)


@torch.no_grad()
def encode(G: SemanticGenerator, encoder: LatentEncoder, images: torch.Tensor, iters: int | None = None,
           batch: int = 16, every_pass: bool = False) -> torch.Tensor | list[torch.Tensor]:
    """Compact W+ codes (N, n_latent, D) of ``images`` (N, 3, S, S) in [−1, 1] after ``iters`` passes
    (default the encoder's ``cfg.iters``), ``batch`` images at a time; ``every_pass``: the list of
    the codes after each pass, [w_1 … w_N]. ``iters = 0`` gives w̄."""
    iters = encoder.cfg.iters if iters is None else iters
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    device = encoder.w_mean.device
    was = encoder.training
    encoder.eval()
    start = encoder.mean_latent(1)
    start_rgb = synthesize(G, start).rgb.float()
    passes: list[list[torch.Tensor]] = [[] for _ in range(max(iters, 1))]
    for s in range(0, images.shape[0], batch):
        x = images[s:s + batch].to(device)
        w = start.expand(x.shape[0], -1, -1)
        recon = start_rgb.expand(x.shape[0], -1, -1, -1)
        if iters == 0:
            passes[0].append(w.clone())
        for t in range(iters):
            w = w + encoder(x, recon)
            if t < iters - 1:
                recon = synthesize(G, w).rgb.float()
            passes[t].append(w)
    encoder.train(was)
    out = [torch.cat(p) for p in passes]
    return out if every_pass else out[-1]


def pass_flops(G: SemanticGenerator, encoder: LatentEncoder) -> dict[str, float]:
    """FLOPs of one image through one encoder pass and through one generator forward
    (``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions), and their ratio."""
    device = encoder.w_mean.device
    x = torch.zeros(1, 3, G.config.size, G.config.size, device=device)
    with torch.no_grad():
        with FlopCounterMode(display=False) as fe:
            encoder(x, x)
        with FlopCounterMode(display=False) as fg:
            synthesize(G, encoder.mean_latent(1))
    e, g = fe.get_total_flops(), fg.get_total_flops()
    return {"encoder_flops": float(e), "generator_flops": float(g), "ratio": e / max(g, 1)}


# ----- files --------------------------------------------------------------------------------------
def generator_digest(G: SemanticGenerator) -> str:
    """sha256 of G's parameters and buffers: what an encoder file is tied to."""
    return param_digest(G)


def save_encoder(path: str | os.PathLike, encoder: LatentEncoder, G: SemanticGenerator, *,
                 optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                 meta: dict[str, Any] | None = None, digest: str | None = None) -> Path:
    """Write the encoder (and its optimiser, for resuming) atomically as an ssgan safetensors file."""
    tensors = {PREFIX + k: v for k, v in encoder.state_dict().items()}
    info = {"kind": KIND, "encoder": encoder.cfg.to_dict(),
            "generator_sha256": digest or generator_digest(G), **(meta or {})}
    return save_checkpoint(path, G.config, g_optim=optimizer, step=step, tensors=tensors, meta=info)


def load_encoder(path: str | os.PathLike, G: SemanticGenerator,
                 digest: str | None = None) -> tuple[LatentEncoder, dict[str, Any]]:
    """The encoder in ``path`` on G's device, and its file's content ({meta, step, optim_state}).

    Raises :class:`EncoderError` (one line naming the file and the fix) for a file that is no
    encoder, or one trained against another generator (configuration or weights)."""
    path = Path(path)
    try:
        ck = load_checkpoint(path, "cpu")
    except CheckpointError as e:
        raise EncoderError(f"encoder {path}: {e}; pass a file written by 'ssgan encoder train'") from None
    if ck.meta.get("kind") != KIND:
        raise EncoderError(f"{path} is not an encoder (no kind={KIND} in its metadata); pass a file "
                           f"written by 'ssgan encoder train'")
    if ck.config != G.config:
        a, b = ck.config.to_dict(), G.config.to_dict()
        diff = ", ".join(f"{k}={a[k]} vs {b[k]}" for k in a if a[k] != b[k])
        raise EncoderError(f"encoder {path} was trained for another generator configuration ({diff}); "
                           f"train one for this checkpoint with 'ssgan encoder train'")
    want = digest or generator_digest(G)
    if ck.meta.get("generator_sha256") != want:
        raise EncoderError(f"encoder {path} was trained against another generator (weights sha256 "
                           f"{str(ck.meta.get('generator_sha256'))[:12]}…, this one {want[:12]}…); train one "
                           f"for this checkpoint with 'ssgan encoder train'")
    state = {k[len(PREFIX):]: v for k, v in ck.tensors.items() if k.startswith(PREFIX)}
    try:
        cfg = EncoderConfig.from_dict(ck.meta.get("encoder", {}))
    except (TypeError, ValueError, AttributeError) as e:
        raise EncoderError(f"encoder {path} has an unusable configuration ({one_line(e)}); "
                           "retrain it") from None
    stages = int(math.log2(min(G.config.size, cfg.max_input))) - 2
    why = wider_than_state({"width": cfg.width, "hidden": cfg.hidden,
                            "the widest stage": min(cfg.channel_max, cfg.width * 2 ** stages)},
                           {"blocks per stage": cfg.blocks * stages}, state)
    if why is not None:  # refused before building the encoder it describes
        raise EncoderError(f"encoder {path} does not match its own configuration ({why}); retrain it")
    try:
        enc = LatentEncoder(G.config, cfg)
    except (TypeError, ValueError, RuntimeError) as e:  # e.g. a width of 2.5
        raise EncoderError(f"encoder {path} has an unusable configuration ({one_line(e)}); "
                           "retrain it") from None
    try:
        enc.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise EncoderError(f"encoder {path} does not match its own configuration "
                           f"({str(e).splitlines()[0][:160]}); retrain it") from None
    enc.to(next(G.parameters()).device).eval()
    return enc, {"meta": ck.meta, "step": ck.step or 0, "optim_state": ck.g_optim_state}
