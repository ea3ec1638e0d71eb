"""The generator of a configuration, whichever its architecture (``SSGANConfig.arch``)."""

from __future__ import annotations

from ssgan.model.config import SSGANConfig
from ssgan.model.generator import SemanticGenerator
from ssgan.model.stylegan2 import StyleGAN2Generator

Generator = SemanticGenerator | StyleGAN2Generator


def build_generator(cfg: SSGANConfig) -> Generator:
    """A new generator for ``cfg``: :class:`SemanticGenerator`, or :class:`StyleGAN2Generator` for
    ``arch="stylegan2"`` (the discriminator follows ``cfg`` itself: DualBranchDiscriminator)."""
    return SemanticGenerator(cfg) if cfg.semantic else StyleGAN2Generator(cfg)
