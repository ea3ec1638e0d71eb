"""The latent layouts of SemanticStyleGAN: compact W+, expanded W+, truncation and style mixing.

Compact W+ has ``base + 2K`` codes: the base codes, then per class k a shape code (index
base + 2k) and a texture code (base + 2k + 1). The expanded layout has K·L codes, L per local
generator: for k = 0, ``depth`` copies of its shape code then L − depth copies of its texture
code; for k > 0, the base codes, then depth − base copies of its shape code, then L − depth
copies of its texture code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ssgan.model.config import SSGANConfig


def expand_index(cfg: SSGANConfig) -> torch.Tensor:
    """For each of the K·L expanded codes, the index of the compact code it copies."""
    base, depth, L = cfg.base_layers, cfg.depth_layers, cfg.local_layers
    index: list[int] = []
    for k in range(cfg.seg_dim):
        shape, texture = base + 2 * k, base + 2 * k + 1
        if k == 0:
            index += [shape] * depth + [texture] * (L - depth)
        else:
            index += list(range(base)) + [shape] * (depth - base) + [texture] * (L - depth)
    return torch.tensor(index, dtype=torch.long)


def expand_latents(latent: torch.Tensor, cfg: SSGANConfig) -> torch.Tensor:
    """(N, n_latent, D) compact codes -> (N, K·L, D) expanded codes; expanded input is returned as is."""
    if latent.ndim != 3:
        raise ValueError(f"latent must be (N, codes, {cfg.style_dim}), got shape {tuple(latent.shape)}")
    if latent.shape[1] == cfg.n_latent_expand:
        return latent
    if latent.shape[1] != cfg.n_latent:
        raise ValueError(f"latent has {latent.shape[1]} codes; expected {cfg.n_latent} (compact W+) "
                         f"or {cfg.n_latent_expand} (expanded W+)")
    return latent.index_select(1, expand_index(cfg).to(latent.device))


def truncate(styles: Sequence[torch.Tensor], truncation: float,
             truncation_latent: torch.Tensor | None) -> list[torch.Tensor]:
    """w ← w̄ + ψ (w − w̄) for each style when ψ < 1 (before the codes are laid out)."""
    if truncation >= 1:
        return list(styles)
    if truncation_latent is None:
        raise ValueError("truncation < 1 needs truncation_latent (the mean w, e.g. G.mean_latent(4096))")
    return [truncation_latent + truncation * (s - truncation_latent) for s in styles]


def mix_styles(styles: Sequence[torch.Tensor], cfg: SSGANConfig,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Lay out mapped codes as expanded W+ (N, K·L, D), as the official ``mix_styles`` does.

    One tensor: (N, D) is repeated into every code, (N, codes, D) is taken as compact or expanded
    W+. Two tensors w1, w2 (N, D): style mixing — base codes from w1; per sample and class,
    (shape, texture) drawn uniformly from (w1, w1), (w1, w2), (w2, w2). More than two: one code
    each, stacked as compact W+."""
    if len(styles) == 1:
        latent = styles[0]
        if latent.ndim < 3:
            latent = latent.unsqueeze(1).expand(-1, cfg.n_latent, -1)
    elif len(styles) > 2:
        latent = torch.stack(list(styles), 1)
    else:
        w1, w2 = styles
        return mix_with_choice(w1, w2, mixing_choice(w1.shape[0], cfg, generator, w1.device), cfg)
    return expand_latents(latent, cfg)


def mixing_choice(n: int, cfg: SSGANConfig, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Style-mixing draws (n, K, 1) in {0, 1, 2}: per sample and class, (shape, texture) from
    (w1, w1), (w1, w2) or (w2, w2). One ``torch.randint`` from ``generator``."""
    return torch.randint(0, 3, (n, cfg.seg_dim, 1), generator=generator, device=device)


def mix_with_choice(w1: torch.Tensor, w2: torch.Tensor, choice: torch.Tensor,
                    cfg: SSGANConfig) -> torch.Tensor:
    """Two mapped codes (N, D) and mixing draws (N, K, 1) → expanded W+ (N, K·L, D); base codes
    from w1. An all-zero ``choice`` gives exactly the unmixed layout of w1 (w2 unused), which
    is how the compiled training step runs mixed and unmixed batches through one graph."""
    n, k = w1.shape[0], cfg.seg_dim
    a, b = w1[:, None], w2[:, None]
    shape = torch.where(choice == 2, b, a)
    texture = torch.where(choice == 0, a, b)
    per_class = torch.stack([shape, texture], 2).reshape(n, 2 * k, -1)
    latent = torch.cat([w1[:, None].expand(-1, cfg.base_layers, -1), per_class], 1)
    return expand_latents(latent, cfg)


def class_codes(classes: Sequence[int], part: str, cfg: SSGANConfig) -> list[int]:
    """Compact W+ indices of ``classes``' codes: shape base + 2k, texture base + 2k + 1.

    part: 'shape', 'texture' or 'all' (both); out-of-range classes raise ``ValueError``, and so
    does a StyleGAN2 configuration (its codes are per layer, not per class)."""
    if not cfg.semantic:
        raise ValueError("a StyleGAN2 model has no per-class codes (its codes are per layer); "
                         "use a SemanticStyleGAN checkpoint")
    if part not in ("shape", "texture", "all"):
        raise ValueError(f"part must be shape, texture or all, not {part!r}")
    bad = [c for c in classes if not 0 <= c < cfg.seg_dim]
    if bad:
        raise ValueError(f"classes {bad} are out of range: the model has seg_dim={cfg.seg_dim} classes")
    return [cfg.base_layers + 2 * c + offset for c in classes
            for offset, name in ((0, "shape"), (1, "texture")) if part in (name, "all")]


def replace_codes(source: torch.Tensor, reference: torch.Tensor, classes: Sequence[int],
                  part: str, cfg: SSGANConfig) -> torch.Tensor:
    """Copy ``classes``' codes from ``reference`` into ``source`` (both compact W+ (N, n_latent, D)).

    part: 'shape' (shape codes), 'texture' (texture codes) or 'all' (both)."""
    index = class_codes(classes, part, cfg)
    out = source.clone()
    out[:, index] = reference[:, index]
    return out
