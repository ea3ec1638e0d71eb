"""The reference model, the mathematical truth of the package (docs/model.md).

``config`` (:class:`SSGANConfig`, presets), ``layers`` (StyleGAN2 building blocks), ``latents``
(the W+ layout: base, shape and texture codes per class), ``generator`` (local generators, depth
fusion, render net), ``discriminator`` (the dual-branch image + mask discriminator).

Layer 1 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl.
"""

from ssgan.model.config import PRESETS, SSGANConfig, preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.generator import SemanticGenerator, Synthesis

__all__ = ["PRESETS", "SSGANConfig", "preset", "DualBranchDiscriminator", "SemanticGenerator", "Synthesis"]
