"""Kernel Inception Distance (Bińkowski et al. 2018), as NVlabs computes it.

Unbiased MMD² between generated features X and real features Y with the cubic polynomial kernel
k(x, y) = (xᵀy / d + 1)³ (d = 2048), averaged over ``num_subsets`` = 100 random subsets of
m = min(|X|, |Y|, 1000) features from each side (without replacement within a subset):

    MMD²_u = [Σ_{i≠j} k(x_i, x_j) + Σ_{i≠j} k(y_i, y_j)] / (m (m − 1)) − 2 Σ_{i,j} k(x_i, y_j) / m²

Float64; subsets drawn with a seeded generator (the same value for the same features).
"""

from __future__ import annotations

import numpy as np
import torch

from ssgan.metrics.metric_utils import MetricOptions, Probes


def kernel_inception_distance(gen_features: torch.Tensor | np.ndarray,
                              real_features: torch.Tensor | np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID of two feature sets (N, d) (see the module doc)."""
    x_all = torch.as_tensor(gen_features).double().cpu()
    y_all = torch.as_tensor(real_features).double().cpu()
    d = x_all.shape[1]
    m = min(x_all.shape[0], y_all.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 features on each side, got {x_all.shape[0]} and "
                         f"{y_all.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = x_all[torch.randperm(x_all.shape[0], generator=g)[:m]]
        y = y_all[torch.randperm(y_all.shape[0], generator=g)[:m]]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        t += float((a.sum() - a.diagonal().sum()) / (m - 1) - b.sum() * 2 / m)
    return t / num_subsets / m


def kid(gen: Probes, real: Probes, opts: MetricOptions) -> tuple[dict[str, float], dict]:
    return {"": kernel_inception_distance(gen.features, real.features, seed=opts.seed)}, {}
