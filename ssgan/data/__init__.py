"""Training data (docs/training.md, "Data").

``base`` (the item format, :class:`DatasetError`, the file scan), ``folders`` (image/label
folders, the in-memory cache, :func:`open_dataset`), ``synthetic`` (the built-in procedural
dataset), ``celebamask`` (CelebAMask-HQ part masks to label maps), ``tools`` (``from-colors``,
``inspect``), ``loader`` (the training loader's data order), ``commands`` (``ssgan data``, also
``python -m ssgan.data``).

Layer 5 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes, checkpoint, provenance, visualize, cliargs.
"""

from ssgan.data.base import (
    IMAGE_SUFFIXES,
    PIL_ERRORS,
    DatasetError,
    ItemDataset,
    images_to_float,
    label_to_mask,
)
from ssgan.data.folders import CachedDataset, FolderDataset, open_dataset
from ssgan.data.loader import StepBatchSampler, make_step_loader
from ssgan.data.synthetic import SyntheticFaces, export_synthetic

__all__ = [
    "IMAGE_SUFFIXES", "PIL_ERRORS", "DatasetError", "ItemDataset", "images_to_float", "label_to_mask",
    "CachedDataset", "FolderDataset", "open_dataset", "StepBatchSampler", "make_step_loader",
    "SyntheticFaces", "export_synthetic",
]
