"""Mask FD: a Fréchet distance between the class compositions of generated and real masks.

Each image becomes its class-area vector a ∈ R^K (a_k = percentage of its pixels in class k; the
generated fine mask is the argmax of the segmentation logits, the real one the label map). The
value is the Fréchet distance (:func:`~ssgan.metrics.frechet_inception_distance.frechet_distance`)
between Gaussians fitted to the two sets of vectors, in %². It needs no pretrained network and
sees what FID cannot: missing or oversized parts, wrong co-occurrence of parts (e.g. glasses
without eyes) and too little or too much variety of layouts.
"""

from __future__ import annotations

from ssgan.metrics.frechet_inception_distance import frechet_distance, mean_cov
from ssgan.metrics.metric_utils import MetricOptions, Probes


def mask_fd(gen: Probes, real: Probes, opts: MetricOptions) -> tuple[dict[str, float], dict]:
    return {"": frechet_distance(*mean_cov(gen.areas), *mean_cov(real.areas))}, {}
