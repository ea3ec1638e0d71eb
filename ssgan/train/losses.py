"""The loss terms of SemanticStyleGAN training (docs/training.md, "Objective", "R1", "Path length"),
one small function each.

Every function returns tensors (never Python numbers), so nothing here synchronises with the
device; the training loop reads values back only when it logs. The formulas follow the
official ``train.py`` (StyleGAN2 objective plus the coarse-mask loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import autograd

__all__ = [
    "d_logistic_loss",
    "g_nonsaturating_loss",
    "mask_loss",
    "path_length_penalty",
    "r1_penalty",
]


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Discriminator logistic loss: mean(softplus(−D(real))) + mean(softplus(D(fake))).

    softplus(x) = log(1 + eˣ); e.g. D(real) = D(fake) = 0 gives 2·log 2."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """R1 gradient penalties, one per input x: mean over the batch of Σ_pixels (∂ΣD/∂x)².

    ``inputs`` must require grad and be what ``real_pred`` was computed from. The graph is kept
    (``create_graph=True``) so the penalty can be back-propagated into D's parameters. The
    caller weights them: (γ_img/2 · R1_img + γ_seg/2 · R1_seg) · d_reg_every."""
    grads = autograd.grad(outputs=real_pred.sum(), inputs=list(inputs), create_graph=True)
    return [g.pow(2).reshape(g.shape[0], -1).sum(1).mean() for g in grads]


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: mean(softplus(−D(G(z))))."""
    return F.softplus(-fake_pred).mean()


def mask_loss(coarse: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Coarse-mask consistency: mean((coarse − avgpool(seg → S×S))²).

    coarse: (B, K, S, S) the fused mask 2m − 1; seg: (B, K, H, W) the render net's logits,
    average-pooled (adaptive) to S×S."""
    down = F.adaptive_avg_pool2d(seg, coarse.shape[2:4])
    return torch.square(coarse - down).mean()


def path_length_penalty(fake_img: torch.Tensor, latents: torch.Tensor,
                        mean_path_length: torch.Tensor | float, decay: float = 0.01
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regularisation with respect to the (expanded) latents.

    y ~ N(0, I) / √(H·W); J = ∂(Σ G(w)·y)/∂w (create_graph=True);
    ℓ_i = √(mean over codes of Σ_D J²) per sample;
    ā ← ā + decay · (mean_i ℓ_i − ā);  penalty = mean_i (ℓ_i − ā)².

    Returns (penalty, new ā detached, ℓ (B,)). The noise y comes from the global torch RNG."""
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
    path_lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
    path_mean = mean_path_length + decay * (path_lengths.mean() - mean_path_length)
    penalty = (path_lengths - path_mean).pow(2).mean()
    return penalty, path_mean.detach(), path_lengths
