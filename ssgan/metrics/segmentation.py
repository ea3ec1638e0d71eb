"""Statistics of class-index maps: the one place where class areas, pixel frequencies and IoU are
computed (the mask metrics, the learning test, ``bench.learning`` and inversion's mask scores all
use these).

A label map is an integer tensor ``(N, H, W)`` of class indices in ``[0, K)``: a real label, or
the argmax over classes of the generator's segmentation logits or coarse mask.

* class areas: a_{n,k} = 100 · #{pixels of map n in class k} / (H·W), in percent;
* pixel frequencies: f_k = #{pixels in class k} / #{pixels}, over all maps (= mean_n a_{n,k} / 100);
* IoU counts per map: I_{n,k} = |pred = k ∧ target = k|, U_{n,k} = |pred = k ∨ target = k|;
  IoU_k = I_k / U_k over whatever maps the caller sums, and the mean IoU averages it over the
  classes present in either map (U_k > 0), or over a given list of classes, where a class absent
  from both maps scores 0 (it was expected and is missing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["class_areas", "iou_counts", "mask_agreement_counts", "mean_iou", "pixel_frequencies",
           "upsample_labels"]


def class_areas(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-map class areas in percent, (N, K) float64, from label maps (N, H, W)."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1).long()
    counts = torch.zeros(n, num_classes, dtype=torch.float64, device=labels.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    return counts * (100.0 / flat.shape[1])


def pixel_frequencies(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Fraction of all pixels in each class, (K,) float64 summing to 1, over label maps (N, H, W)."""
    return class_areas(labels, num_classes).mean(0) / 100.0


def iou_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, 2, K) int64: per map and class, the intersection I and the union U of ``pred = k`` and
    ``target = k``; both label maps (N, H, W) of the same shape."""
    if pred.shape != target.shape:
        raise ValueError(f"label maps of different shapes: {tuple(pred.shape)} and {tuple(target.shape)}")
    k = torch.arange(num_classes, device=pred.device).view(1, -1, 1)
    a, b = pred.reshape(pred.shape[0], 1, -1) == k, target.reshape(target.shape[0], 1, -1) == k
    return torch.stack([(a & b).sum(2), (a | b).sum(2)], 1)


def mean_iou(counts: torch.Tensor, classes: Sequence[int] | None = None) -> torch.Tensor:
    """Mean IoU from counts ``(..., 2, K)`` (e.g. :func:`iou_counts`, summed over maps or not):
    over ``classes`` (a class with U = 0 scores 0), or by default over the classes with U > 0
    (1.0 where there is none). Returns a float64 tensor of shape ``(...)``."""
    inter, union = counts.double().unbind(-2)
    iou = inter / union.clamp_min(1)
    if classes is not None:
        return iou[..., list(classes)].mean(-1)
    present = union > 0
    n = present.sum(-1)
    return torch.where(n > 0, (iou * present).sum(-1) / n.clamp_min(1), torch.ones_like(iou[..., 0]))


def upsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour enlargement of label maps (N, S, S) to ``size`` = (H, W), H and W multiples
    of S (each coarse cell becomes an (H/S) × (W/S) block)."""
    h, w = labels.shape[-2:]
    if size[0] % h or size[1] % w:
        raise ValueError(f"label maps of {h}×{w} do not enlarge evenly to {size[0]}×{size[1]}")
    return labels.repeat_interleave(size[0] // h, -2).repeat_interleave(size[1] // w, -1)


def mask_agreement_counts(fine: torch.Tensor, coarse: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(2, K) int64 on the CPU: intersection and union, summed over the maps, of the fine mask
    (N, H, W) and the coarse mask (N, S, S) nearest-upsampled to H × W."""
    return iou_counts(fine, upsample_labels(coarse, fine.shape[-2:]), num_classes).sum(0).cpu()
