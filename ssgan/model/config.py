"""Model configuration: one frozen dataclass and the named presets.

Field names follow the official ``args`` Namespace (``seg_dim``, ``local_layers`` …) so that a
released checkpoint's configuration maps onto :class:`SSGANConfig` field by field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The generator architectures (``SSGANConfig.arch``, ``--arch``): SemanticStyleGAN (local
#: generators, fusion, render net, dual-branch D) and the StyleGAN2 baseline (mapping network,
#: modulated synthesis, image-only D; :mod:`ssgan.model.stylegan2`).
ARCHS: tuple[str, ...] = ("semanticstylegan", "stylegan2")
DEFAULT_ARCH = ARCHS[0]


def option(default: Any, help: str) -> Any:
    """A :class:`SSGANConfig` field: its default and the help of its flag (:func:`add_config_flags`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SSGANConfig:
    """Everything that fixes the shapes of the generator and the discriminator.

    Notation of docs/model.md, "Notation": K = ``seg_dim``, L = ``local_layers``, C = ``local_channel``,
    F = ``coarse_channel``, S = ``coarse_size``.

    ``arch``: the generator architecture (:data:`ARCHS`). ``stylegan2`` uses ``size``,
    ``style_dim``, ``n_mlp``, ``lr_mlp`` and the channel table (:meth:`channels`) and ignores the
    local-generator fields; ``seg_dim`` and ``transparent_dims`` still name the data's classes.
    :meth:`to_dict` leaves out the default arch, so SemanticStyleGAN checkpoints keep their bytes
    and a checkpoint without the field is SemanticStyleGAN.
    """

    size: int = option(256, "output resolution (power of two)")
    style_dim: int = option(512, "latent / style width D")
    n_mlp: int = option(8, "mapping-network layers")
    lr_mlp: float = option(0.01, "mapping-network learning-rate multiplier")
    channel_multiplier: int = option(2, "render-net / discriminator width multiplier")
    channel_max: int = option(512, "cap on the render-net / discriminator widths (512: official)")
    seg_dim: int = option(13, "number of classes K (labels 0..K-1)")
    local_layers: int = option(10, "layers per local generator L")
    local_channel: int = option(64, "local-generator width C")
    base_layers: int = option(2, "shared base layers of the local generators")
    depth_layers: int = option(6, "layer after which the pseudo-depth is tapped")
    coarse_size: int = option(64, "resolution S of the local generators' output")
    coarse_channel: int = option(512, "feature channels F of the coarse feature map")
    min_feat_size: int = option(16, "resolution of the render net's first layer")
    residual_refine: bool = option(True, "render net refines the coarse segmentation residually")
    detach_texture: bool = option(False, "texture codes do not receive gradients through the shape path")
    transparent_dims: tuple[int, ...] = option(
        (10, 12), "transparent classes, comma-separated indices or names ('' for none)")
    arch: str = option(DEFAULT_ARCH, "generator architecture: semanticstylegan, or the stylegan2 baseline "
                                     "(image-only D, no masks)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "transparent_dims", tuple(int(t) for t in self.transparent_dims))
        problems = []
        if not 8 <= self.size <= 1024 or self.size & (self.size - 1):  # 1024: channels()' table
            problems.append(f"size={self.size} must be a power of two in 8..1024")
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
        if self.arch not in ARCHS:
            problems.append(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if any(not 0 <= t < self.seg_dim for t in self.transparent_dims):
            problems.append(f"transparent_dims {self.transparent_dims} must lie in [0, seg_dim)")
        if problems:
            raise ValueError("invalid SSGANConfig: " + "; ".join(problems))

    @property
    def semantic(self) -> bool:
        """Whether this is SemanticStyleGAN (per-class codes, masks), not the StyleGAN2 baseline."""
        return self.arch == DEFAULT_ARCH

    @property
    def n_latent(self) -> int:
        """Codes in the compact W+ layout: base codes, then (shape, texture) per class; StyleGAN2:
        one per synthesis conv and ToRGB, 2·log2(size) − 2."""
        if not self.semantic:
            return 2 * int(math.log2(self.size)) - 2
        return self.base_layers + 2 * self.seg_dim

    @property
    def n_latent_expand(self) -> int:
        """Codes in the expanded layout: ``local_layers`` per local generator (StyleGAN2: n_latent)."""
        return self.seg_dim * self.local_layers if self.semantic else self.n_latent

    def channels(self, resolution: int) -> int:
        """Render-net and discriminator width at ``resolution`` (docs/model.md,
        "Configurations and presets"), capped at ``channel_max``."""
        m = self.channel_multiplier
        table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m,
                 512: 32 * m, 1024: 16 * m}
        return min(table[resolution], self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values; ``arch`` only when it is not the default (class doc)."""
        d = dataclasses.asdict(self)
        d["transparent_dims"] = list(self.transparent_dims)
        if self.semantic:
            del d["arch"]
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
    # The built-in portraits (--data faces: 9 classes, glasses transparent) at 64 px, sized to train
    # on two CPU cores within an hour (docs/training.md, "The small preset").
    "small": SSGANConfig(
        size=64, style_dim=128, n_mlp=4, channel_max=64, seg_dim=9, local_layers=4,
        local_channel=24, base_layers=1, depth_layers=2, coarse_size=32, coarse_channel=48,
        min_feat_size=8, transparent_dims=(7,),
    ),
}


def preset(name: str) -> SSGANConfig:
    """The named configuration; raises ``ValueError`` listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


# ----- command-line flags, one per SSGANConfig field -------------------------------------------

def config_flag(name: str) -> str:
    """The command-line flag of the :class:`SSGANConfig` field ``name`` (``seg_dim`` -> ``--seg-dim``)."""
    return "--transparent" if name == "transparent_dims" else "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser | Any) -> None:
    """Add one flag per :class:`SSGANConfig` field (``--size``, ``--seg-dim``, ``--transparent`` …;
    the official script's spellings ``--seg_dim``, ``--transparent_dims`` … work too, unlisted)
    and ``--config FILE`` to ``parser`` (or an argument group). A flag not given leaves no
    attribute (argparse.SUPPRESS): only the flags a user gives change a configuration (see
    :func:`config_overrides`)."""
    parser.add_argument("--config", default=None, metavar="JSON",
                        help="SSGANConfig fields (all or some) as JSON, on top of the preset (default: none)")
    for f in dataclasses.fields(SSGANConfig):
        flag = config_flag(f.name)
        spellings = [[flag]] + ([[f"--{f.name}"]] if "_" in f.name else [])
        for names, shown in zip(spellings, (True, False), strict=False):
            common: dict[str, Any] = {"dest": f"cfg_{f.name}", "default": argparse.SUPPRESS,
                                      "help": f"{f.metadata['help']} (default: the preset's)" if shown
                                      else argparse.SUPPRESS}
            if f.type in ("bool", bool):
                parser.add_argument(*names, action=argparse.BooleanOptionalAction, **common)
            elif f.name == "transparent_dims":
                parser.add_argument(*names, metavar="K,K", **common)
            elif f.name == "arch":
                parser.add_argument(*names, choices=ARCHS, **common)
            else:
                kind = float if str(f.type) == "float" else int
                parser.add_argument(*names, type=kind, metavar="X" if kind is float else "N", **common)


def parse_class_list(text: str, names: Sequence[str] | None = None) -> tuple[int, ...]:
    """``"6,7"`` or (with ``names``) ``"hair,eyes"`` -> class indices; ``""``/``"none"`` -> ``()``.
    Raises ``ValueError`` naming an unknown class and the known names."""
    out = []
    lookup = {n.lower(): i for i, n in enumerate(names or ())}
    for token in (t.strip() for t in text.split(",")):
        if not token or token.lower() == "none":
            continue
        if token.lstrip("-").isdigit():
            out.append(int(token))
        elif token.lower() in lookup:
            out.append(lookup[token.lower()])
        else:
            known = (f"; the classes are {', '.join(f'{i} {n}' for i, n in enumerate(names))}" if names
                     else " (no class names are known: give indices)")
            raise ValueError(f"unknown class {token!r}{known}")
    return tuple(out)


def config_overrides(args: argparse.Namespace, names: Sequence[str] | None = None
                     ) -> dict[str, tuple[Any, str]]:
    """The configuration fields the user set, each with where it was set: those of ``--config
    FILE`` (a JSON object of SSGANConfig fields, all or some, or a checkpoint-style ``{"config":
    {...}}``), then the flags of :func:`add_config_flags` on top. ``names``: class names that
    ``--transparent`` may use besides indices. Returns ``{field: (value, "--flag" or "--config
    FILE")}``; raises ``ValueError`` (one line) for an unreadable file or an unknown field/class."""
    out: dict[str, tuple[Any, str]] = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read --config {path}: {e}") from None
        data = data.get("config", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise ValueError(f"--config {path} must hold a JSON object of SSGANConfig fields")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(SSGANConfig)})
        if unknown:
            raise ValueError(f"--config {path}: unknown field(s) {', '.join(unknown)}")
        out.update({k: (v, f"--config {path}") for k, v in data.items()})
    for f in dataclasses.fields(SSGANConfig):
        value = getattr(args, f"cfg_{f.name}", None)
        if value is not None:
            if f.name == "transparent_dims":
                try:
                    value = parse_class_list(value, names)
                except ValueError as e:
                    raise ValueError(f"--transparent: {e}") from None
            out[f.name] = (value, config_flag(f.name))
    if "transparent_dims" in out:
        out["transparent_dims"] = (tuple(out["transparent_dims"][0]), out["transparent_dims"][1])
    return out


def resolve_config(base: SSGANConfig, overrides: dict[str, tuple[Any, str]],
                   locked: str | None = None) -> SSGANConfig:
    """``base`` with ``overrides`` (:func:`config_overrides`, plus e.g. classes.json's entries).
    ``locked``: ``base`` is the configuration of this checkpoint (a resumed or ``--init`` run), so
    any override that differs from it is an error. Raises ``ValueError`` (one line) naming the
    source of the offending value."""
    if locked is not None:
        for name, (value, source) in overrides.items():
            if getattr(base, name) != value:
                raise ValueError(f"{source} sets {name}={_show(value)} but {locked} was trained with "
                                 f"{name}={_show(getattr(base, name))}; drop it, or start a new run "
                                 f"(another --outdir) to train another configuration")
    try:
        return base.replace(**{name: value for name, (value, _) in overrides.items()})
    except (TypeError, ValueError) as e:
        hint = ("; when changing the class count, give --transparent too ('' for none)"
                if "seg_dim" in overrides and "transparent_dims" not in overrides else "")
        given = ", ".join(sorted({src for _, src in overrides.values()}))
        raise ValueError(f"{e} (set by {given or 'the preset'}){hint}") from None


def _show(value: Any) -> str:
    return ",".join(map(str, value)) or "none" if isinstance(value, (tuple, list)) else str(value)
