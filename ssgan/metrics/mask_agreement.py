"""Agreement of the fine segmentation with the coarse mask the image was rendered from.

The generator composes its image from a coarse (S × S) mask of the local generators' pseudo-depths
and then renders a fine (H × W) segmentation; a well-trained model keeps them consistent. Per
class k, IoU_k = |fine = k ∧ coarse = k| / |fine = k ∨ coarse = k| summed over all generated
pixels (the coarse argmax nearest-upsampled to H × W); the value is the mean IoU over the classes
that occur (union > 0), in [0, 1], higher is better. No real data, no pretrained network.
"""

from __future__ import annotations

from ssgan.metrics.metric_utils import MetricOptions, Probes
from ssgan.metrics.segmentation import mean_iou


def mask_agreement(gen: Probes, real: Probes | None, opts: MetricOptions) -> tuple[dict[str, float], dict]:
    inter, union = gen.agreement.double()
    per_class = [round(float(i / u), 4) if u > 0 else None for i, u in zip(inter, union)]
    return {"": float(mean_iou(gen.agreement))}, {"per_class_iou": per_class}
