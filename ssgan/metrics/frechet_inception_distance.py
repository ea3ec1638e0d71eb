"""Fréchet Inception Distance (Heusel et al. 2017) and the Fréchet distance it is built on.

    FID = |μ_g − μ_r|² + tr Σ_g + tr Σ_r − 2 tr (Σ_g Σ_r)^½

of Gaussians fitted (mean, unbiased covariance, float64) to the Inception pool3 features of
generated and real images. tr (Σ1 Σ2)^½ is computed as tr (Σ1^½ Σ2 Σ1^½)^½ — the two matrices are
similar, so their square roots have the same trace — with two symmetric eigen-decompositions
(``torch.linalg.eigh``), no scipy: Σ1^½ = V diag(√λ) Vᵀ and then Σ √eig(Σ1^½ Σ2 Σ1^½). Eigenvalues
that round below zero (singular covariances, e.g. fewer images than dimensions) are clamped to 0.
"""

from __future__ import annotations

import numpy as np
import torch

from ssgan.metrics.metric_utils import MetricOptions, Probes


def _f64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x).to(device="cpu", dtype=torch.float64)


def mean_cov(x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of samples (N, D), in float64."""
    x = _f64(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples (N, D) for a covariance, got shape {tuple(x.shape)}")
    mu = x.mean(0)
    d = x - mu
    return mu, d.T @ d / (x.shape[0] - 1)


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    lam, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * lam.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor | np.ndarray, sigma1: torch.Tensor | np.ndarray,
                     mu2: torch.Tensor | np.ndarray, sigma2: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) (see the module doc), in float64."""
    mu1, sigma1, mu2, sigma2 = _f64(mu1), _f64(sigma1), _f64(mu2), _f64(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(),) * 2:
        raise ValueError(f"shapes differ: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, sigma "
                         f"{tuple(sigma1.shape)} / {tuple(sigma2.shape)}")
    r1 = _psd_sqrt(sigma1)
    m = r1 @ sigma2 @ r1
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


def fid(gen: Probes, real: Probes, opts: MetricOptions) -> tuple[dict[str, float], dict]:
    return {"": frechet_distance(*mean_cov(gen.features), *mean_cov(real.features))}, {}
