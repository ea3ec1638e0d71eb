"""Model configuration: one frozen dataclass and the named presets.

Field names follow the official ``args`` Namespace (``seg_dim``, ``local_layers`` …) so that a
released checkpoint's configuration maps onto :class:`SSGANConfig` field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SSGANConfig:
    """Everything that fixes the shapes of the generator and the discriminator.

    Notation of SPEC.md: K = ``seg_dim``, L = ``local_layers``, C = ``local_channel``,
    F = ``coarse_channel``, S = ``coarse_size``.
    """

    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    lr_mlp: float = 0.01
    channel_multiplier: int = 2
    channel_max: int = 512  # cap on the render-net / discriminator channel table (512 = official)
    seg_dim: int = 13
    local_layers: int = 10
    local_channel: int = 64
    base_layers: int = 2
    depth_layers: int = 6
    coarse_size: int = 64
    coarse_channel: int = 512
    min_feat_size: int = 16
    residual_refine: bool = True
    detach_texture: bool = False
    transparent_dims: tuple[int, ...] = field(default=(10, 12))

    def __post_init__(self) -> None:
        object.__setattr__(self, "transparent_dims", tuple(int(t) for t in self.transparent_dims))
        problems = []
        if self.size < 8 or self.size & (self.size - 1):
            problems.append(f"size={self.size} must be a power of two >= 8")
        if not 0 <= self.base_layers <= self.depth_layers <= self.local_layers:
            problems.append("need 0 <= base_layers <= depth_layers <= local_layers")
        if self.depth_layers < 1:
            problems.append("depth_layers must be >= 1 (the pseudo-depth is tapped after that layer)")
        if not self.min_feat_size < self.coarse_size < self.size:
            problems.append("need min_feat_size < coarse_size < size")
        elif self.coarse_size % self.min_feat_size:
            problems.append("coarse_size must be a multiple of min_feat_size")
        if self.seg_dim < 1:
            problems.append("seg_dim must be >= 1")
        if any(not 0 <= t < self.seg_dim for t in self.transparent_dims):
            problems.append(f"transparent_dims {self.transparent_dims} must lie in [0, seg_dim)")
        if problems:
            raise ValueError("invalid SSGANConfig: " + "; ".join(problems))

    @property
    def n_latent(self) -> int:
        """Codes in the compact W+ layout: base codes, then (shape, texture) per class."""
        return self.base_layers + 2 * self.seg_dim

    @property
    def n_latent_expand(self) -> int:
        """Codes in the expanded layout: ``local_layers`` per local generator."""
        return self.seg_dim * self.local_layers

    def channels(self, resolution: int) -> int:
        """Render-net and discriminator width at ``resolution`` (SPEC.md table, capped)."""
        m = self.channel_multiplier
        table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m,
                 512: 32 * m, 1024: 16 * m}
        return min(table[resolution], self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["transparent_dims"] = list(self.transparent_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SSGANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown configuration fields: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> SSGANConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, SSGANConfig] = {
    # The released checkpoints (CelebAMask-HQ, 512 px).
    "celeba-512": SSGANConfig(size=512),
    # The paper's main configuration (256 px).
    "celeba-256": SSGANConfig(size=256),
    # CPU-friendly: trains on the built-in dataset in minutes on two cores. Five classes to match
    # the built-in dataset, the last one transparent.
    "tiny": SSGANConfig(
        size=32, style_dim=128, n_mlp=4, channel_max=64, seg_dim=5, local_layers=4,
        local_channel=16, base_layers=1, depth_layers=2, coarse_size=16, coarse_channel=32,
        min_feat_size=4, transparent_dims=(4,),
    ),
}


def preset(name: str) -> SSGANConfig:
    """The named configuration; raises ``ValueError`` listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
