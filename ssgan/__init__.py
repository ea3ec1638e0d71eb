"""ssgan: SemanticStyleGAN (CVPR 2022) in PyTorch with Triton kernels."""

from ssgan.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from ssgan.model.config import PRESETS, SSGANConfig, preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.generator import SemanticGenerator, Synthesis

__all__ = [
    "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint",
    "PRESETS", "SSGANConfig", "preset",
    "DualBranchDiscriminator", "SemanticGenerator", "Synthesis",
]
