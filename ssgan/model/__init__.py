"""The reference model, the mathematical truth of the package (docs/model.md).

``config`` (:class:`SSGANConfig`, presets), ``layers`` (StyleGAN2 building blocks), ``latents``
(the W+ layout: base, shape and texture codes per class), ``generator`` (local generators, depth
fusion, render net), ``discriminator`` (the dual-branch image + mask discriminator), ``stylegan2``
(the StyleGAN2 baseline's generator), ``networks`` (:func:`build_generator`: either, by ``arch``).

Layer 1 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl.
"""

from ssgan.model.config import PRESETS, SSGANConfig, preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.generator import SemanticGenerator, Synthesis
from ssgan.model.networks import build_generator
from ssgan.model.stylegan2 import StyleGAN2Generator

__all__ = ["PRESETS", "SSGANConfig", "preset", "DualBranchDiscriminator", "SemanticGenerator", "Synthesis",
           "StyleGAN2Generator", "build_generator"]
