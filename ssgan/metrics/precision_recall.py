"""Improved precision and recall (Kynkäänniemi et al. 2019), k = 3, as NVlabs computes them.

Each set's manifold is the union of balls around its features with radius the distance to the
k-th nearest other feature of the same set. precision = the fraction of generated features inside
the real manifold; recall = the fraction of real features inside the generated manifold.
Distances are Euclidean in the Inception pool3 space (NVlabs uses VGG-16 features, whose ImageNet
weights no offline package ships; the values are therefore not NVlabs' ``pr50k3``).
"""

from __future__ import annotations

import torch

from ssgan.metrics.metric_utils import MetricOptions, Probes

NHOOD = 3


def _inside(manifold: torch.Tensor, probes: torch.Tensor, k: int, rows: int) -> torch.Tensor:
    """Per probe: lies within the k-NN ball of some manifold point."""
    kth = torch.cat([torch.cdist(m, manifold).kthvalue(k + 1, dim=1).values for m in manifold.split(rows)])
    return torch.cat([(torch.cdist(p, manifold) <= kth).any(1) for p in probes.split(rows)])


def precision_recall(gen_features: torch.Tensor, real_features: torch.Tensor, k: int = NHOOD,
                     device: torch.device | str = "cpu", rows: int = 4096) -> tuple[float, float]:
    """(precision, recall) of generated vs real features (see the module doc)."""
    gen = torch.as_tensor(gen_features).float().to(device)
    real = torch.as_tensor(real_features).float().to(device)
    if min(gen.shape[0], real.shape[0]) < k + 1:
        raise ValueError(f"precision/recall with k = {k} needs at least {k + 1} features on each side")
    precision = _inside(real, gen, k, rows).float().mean()
    recall = _inside(gen, real, k, rows).float().mean()
    return float(precision), float(recall)


def pr(gen: Probes, real: Probes, opts: MetricOptions) -> tuple[dict[str, float], dict]:
    p, r = precision_recall(gen.features, real.features, device=opts.device)
    return {"_precision": p, "_recall": r}, {"k": NHOOD}
