"""Inception Score (Salimans et al. 2016), as NVlabs computes it.

p(y|x) = softmax of the FID Inception's 1008 logits without the output bias; over 10 splits of
the generated images, IS = exp(E_x KL(p(y|x) ‖ p(y))) with p(y) the split's mean; the value is
the mean over splits (their standard deviation is reported beside it). No real data.
"""

from __future__ import annotations

import torch

from ssgan.metrics.metric_utils import MetricOptions, Probes


def inception_score(logits: torch.Tensor, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) over splits of the Inception Score of logits (N, C)."""
    probs = torch.as_tensor(logits).double().softmax(1)
    n = probs.shape[0]
    if n < num_splits:
        raise ValueError(f"the Inception Score over {num_splits} splits needs at least {num_splits} images")
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits: (i + 1) * n // num_splits]
        kl = part * (part.clamp_min(1e-300).log() - part.mean(0, keepdim=True).log())
        scores.append(kl.sum(1).mean().exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


def inception_score_metric(gen: Probes, real: Probes | None,
                           opts: MetricOptions) -> tuple[dict[str, float], dict]:
    mean, std = inception_score(gen.logits)
    return {"": mean}, {"std": std}
