"""What every dataset of :mod:`ssgan.data` shares: the item format, the errors, the file scan.

Every dataset yields a dict per item (docs/training.md, "Data"):

* ``'image'``: float tensor ``(3, H, W)`` scaled to ``[-1, 1]``;
* ``'mask'``: float tensor ``(K, H, W)``, the label one-hot per class, scaled to ``[-1, 1]``
  (1 where the pixel belongs to the class, -1 elsewhere);
* ``'label'``: long tensor ``(H, W)`` of class indices in ``[0, K)``.

Image-only data (:class:`~ssgan.data.folders.FolderDataset` with ``labels=None``, used for domain
adaptation) yields ``'image'`` alone: the keys ``'mask'`` and ``'label'`` are absent.

The training loader (:func:`ssgan.data.loader.make_step_loader`) ships leaner items: a uint8 image
``(3, H, W)`` and a uint8 label, a quarter and a 4K-th of the float bytes; the loop turns them
into the above on the device with :func:`images_to_float` and :func:`label_to_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ssgan.provenance import ALGORITHMIC, Provenance, save_image, software

#: Image file suffixes that :class:`FolderDataset` reads (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

#: Errors PIL raises for unreadable, truncated or hostile files.
PIL_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)

#: Largest image (width × height) decoded: PIL's own ``MAX_IMAGE_PIXELS``, where it only warns
#: (it refuses at twice that): an RGB image of this size is 268 MB decoded.
MAX_PIXELS = 89_478_485


def check_pixels(im: Image.Image) -> None:
    """Refuse, before decoding, an image over :data:`MAX_PIXELS` (a decompression bomb: a small
    file that claims a huge canvas) with PIL's ``DecompressionBombError``, one of
    :data:`PIL_ERRORS`, so that every reader reports it as it reports an unreadable file."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise Image.DecompressionBombError(f"{w}x{h} = {w * h:,} pixels is over the limit of {MAX_PIXELS:,}")


class DatasetError(ValueError):
    """Bad training data: the message names the offending file(s) and how to fix them."""


# ------------------------------------------------------------------------------------------------
# Item conversion shared by all datasets
# ------------------------------------------------------------------------------------------------


def label_to_mask(label: torch.Tensor, seg_dim: int) -> torch.Tensor:
    """One-hot mask scaled to ``[-1, 1]`` from class indices.

    ``label``: integer tensor ``(H, W)`` or ``(N, H, W)``; returns float ``(K, H, W)`` or
    ``(N, K, H, W)`` on the same device. Handy to expand labels on the GPU.
    """
    classes = torch.arange(seg_dim, device=label.device, dtype=label.dtype).view(seg_dim, 1, 1)
    return (label.unsqueeze(-3) == classes).float().mul_(2).sub_(1)


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape, e.g. ``(N, 3, H, W)``) -> float32 in ``[-1, 1]``: x / 127.5 − 1,
    on their own device (the training loop calls it after the copy to the GPU). Bit-identical to
    the float items of the datasets (:func:`to_item` does the same float32 operations in NumPy);
    floating-point input is returned unchanged."""
    if images.is_floating_point():
        return images
    return images.float().div_(127.5).sub_(1)


def to_item(
    image: np.ndarray, label: np.ndarray | None, seg_dim: int, flip: bool, masks: bool = True
) -> dict[str, torch.Tensor]:
    """uint8 ``(H, W, 3)`` image and uint8 ``(H, W)`` label -> the item dict (see module doc).

    ``masks=False``: what the training loader ships: ``image`` stays uint8 ``(3, H, W)``, no
    ``mask``, ``label`` stays uint8 (the device makes the rest with :func:`images_to_float` and
    :func:`label_to_mask`).

    Done in NumPy: several times faster than the same ops in torch on the CPU of a worker.
    """
    if flip:
        image = image[:, ::-1]
        label = None if label is None else label[:, ::-1]
    if not masks:
        item = {"image": torch.from_numpy(np.array(image.transpose(2, 0, 1), dtype=np.uint8, order="C"))}
        if label is not None:  # np.array copies: a decoded file's arrays are read-only
            item["label"] = torch.from_numpy(np.array(label, dtype=np.uint8, order="C"))
        return item
    img = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    img /= 127.5
    img -= 1
    item = {"image": torch.from_numpy(img)}
    if label is not None:
        lab = np.ascontiguousarray(label)
        mask = (lab[None] == np.arange(seg_dim, dtype=lab.dtype)[:, None, None]).astype(np.float32)
        mask *= 2
        mask -= 1
        item["mask"] = torch.from_numpy(mask)
        item["label"] = torch.from_numpy(lab.astype(np.int64))
    return item


class ItemDataset(Dataset):
    """Base: subclasses provide ``_load(i) -> (uint8 image (H,W,3), uint8 label (H,W) | None)``
    without any flip; this class applies the optional random horizontal flip and builds the dict.

    Attributes every subclass sets: ``size`` (H = W), ``seg_dim`` (K), ``hflip`` and
    ``has_labels`` (False for image-only data); ``class_names``: the names of classes 0 … K−1
    when the data itself knows them (the built-in data), else None (a folder's are in its
    ``classes.json``, see :mod:`ssgan.classes`).
    """

    size: int
    seg_dim: int
    hflip: bool
    has_labels: bool
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:  # pragma: no cover
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        return index % n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = self._check_index(int(index))
        image, label = self._load(index)
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        return to_item(image, label, self.seg_dim, flip)


def scan_folder(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """stem -> file for the files of ``folder`` (not recursive) whose suffix is in ``suffixes``."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in suffixes:
            continue
        if p.stem in found:
            raise DatasetError(
                f"two {what} files share the stem {p.stem!r}: {found[p.stem]} and {p}; "
                f"keep one of them (files are matched by stem)"
            )
        found[p.stem] = p
    return found


def write_item(out: Path, name: str, image: np.ndarray, label: np.ndarray) -> None:
    """One item of a procedural dataset as ``out/images/<name>.png`` (with its provenance record:
    drawn by an algorithm, not a trained model, so IPTC ``algorithmicMedia`` and no watermark) and
    ``out/labels/<name>.png`` (mode L class indices, plain)."""
    save_image(image, out / "images" / f"{name}.png",
               Provenance(ALGORITHMIC, "data-synthetic", software(), None, False, 0))
    (out / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(label).save(out / "labels" / f"{name}.png")
