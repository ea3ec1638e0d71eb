"""Quality metrics: FID, KID, precision/recall, Inception Score, and mask metrics that need no
pretrained network (laid out like NVlabs' ``metrics/``: one file per metric over the shared
:mod:`~ssgan.metrics.metric_utils`; the registry and :func:`compute` in
:mod:`~ssgan.metrics.metric_main`; the FID Inception in :mod:`~ssgan.metrics.inception`).

    from ssgan.metrics import compute
    compute("fid10k,maskfd10k", "runs/tiny/checkpoints/0000500.safetensors")["metrics"]

Layer 6 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes, checkpoint, provenance, visualize, cliargs, data.
"""

from ssgan.metrics.frechet_inception_distance import frechet_distance, mean_cov
from ssgan.metrics.inception import FIDInceptionV3, InceptionError, load_inception
from ssgan.metrics.inception_score import inception_score
from ssgan.metrics.kernel_inception_distance import kernel_inception_distance
from ssgan.metrics.metric_main import KINDS, Evaluator, MetricError, compute, make_options, parse_metrics
from ssgan.metrics.metric_utils import MetricOptions
from ssgan.metrics.precision_recall import precision_recall

__all__ = [
    "KINDS", "Evaluator", "FIDInceptionV3", "InceptionError", "MetricError", "MetricOptions", "compute",
    "frechet_distance", "inception_score", "kernel_inception_distance", "load_inception", "make_options",
    "mean_cov", "parse_metrics", "precision_recall",
]
