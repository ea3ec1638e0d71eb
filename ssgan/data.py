"""Training data: image/label folders, an in-memory cache, :func:`open_dataset` and the
``python -m ssgan.data`` command line. The built-in procedural dataset is in :mod:`ssgan.synthetic`,
the CelebAMask-HQ label converter in :mod:`ssgan.celebamask`.

Every dataset here and in :mod:`ssgan.synthetic` yields a dict per item (SPEC.md, "Training"):

* ``'image'``: float tensor ``(3, H, W)`` scaled to ``[-1, 1]``;
* ``'mask'``: float tensor ``(K, H, W)``, the label one-hot per class, scaled to ``[-1, 1]``
  (1 where the pixel belongs to the class, -1 elsewhere);
* ``'label'``: long tensor ``(H, W)`` of class indices in ``[0, K)``.

Image-only data (:class:`FolderDataset` with ``labels=None``, used for domain adaptation) yields
``'image'`` alone: the keys ``'mask'`` and ``'label'`` are absent.

The training loader (:func:`ssgan.loader.make_step_loader`) ships leaner items: a uint8 image
``(3, H, W)`` and a uint8 label, a quarter and a 4K-th of the float bytes; the loop turns them
into the above on the device with :func:`images_to_float` and :func:`label_to_mask`.

Command line::

    python -m ssgan.data celebamask ANNO_DIR OUT_DIR [--size 512] [--workers N]
    python -m ssgan.data synthetic OUT_DIR [--n 1000] [--size 64] [--seg-dim 5] [--seed 0]
    python -m ssgan.data from-colors LABELS_DIR OUT_DIR --colors classes.json   (ssgan.datatools)
    python -m ssgan.data inspect DIR [--size 256] [--png inspect.png]           (ssgan.datatools)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "IMAGE_SUFFIXES",
    "CachedDataset",
    "DatasetError",
    "FolderDataset",
    "images_to_float",
    "label_to_mask",
    "main",
    "open_dataset",
]

#: Image file suffixes that :class:`FolderDataset` reads (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Errors PIL raises for unreadable, truncated or hostile files.
_PIL_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


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
    the float items of the datasets (:func:`_to_item` does the same float32 operations in NumPy);
    floating-point input is returned unchanged."""
    if images.is_floating_point():
        return images
    return images.float().div_(127.5).sub_(1)


def _to_item(
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


class _ItemDataset(Dataset):
    """Base: subclasses provide ``_load(i) -> (uint8 image (H,W,3), uint8 label (H,W) | None)``
    without any flip; this class applies the optional random horizontal flip and builds the dict.

    Attributes every subclass sets: ``size`` (H = W), ``seg_dim`` (K), ``hflip`` and
    ``has_labels`` (False for image-only data).
    """

    size: int
    seg_dim: int
    hflip: bool
    has_labels: bool

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
        return _to_item(image, label, self.seg_dim, flip)


# ------------------------------------------------------------------------------------------------
# Image / label folders
# ------------------------------------------------------------------------------------------------


def _names(paths: Sequence[Path], limit: int = 5) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else f" ({len(paths)} in all)")


def _scan(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
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


def _same_area(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Equal aspect ratio (to 1 %): the same picture at possibly different scales."""
    return abs(a[0] * b[1] - a[1] * b[0]) <= 0.01 * a[0] * b[1]


class FolderDataset(_ItemDataset):
    """Images (and their label maps) from two folders, matched by file stem.

    * ``images``: files ending in .png/.jpg/.jpeg/.webp/.bmp (not recursive; hidden files and
      other suffixes are ignored), converted to RGB and resized to ``size x size`` with LANCZOS
      (JPEGs are first decoded at reduced scale, no smaller than 2*size, which is much faster).
      Non-square images are stretched.
    * ``labels``: ``<stem>.png`` per image, single channel (mode L or P) holding class indices
      0..K-1, resized with NEAREST (values stay class indices). A label may be a different
      resolution than its image (CelebA-HQ: 1024 px images, 512 px labels) but must have the
      same aspect ratio. ``labels=None``: image-only data (domain adaptation); items then hold
      only ``'image'`` (no ``'mask'``/``'label'``) and ``has_labels`` is False.
    * ``hflip``: flip each item (image and label together) with probability 1/2.

    The constructor checks names up front (empty folder, image without label, label without
    image, duplicate stems) and, with ``verify=True``, reads every file header (no decoding):
    unreadable images, labels that are not single-channel, image/label shape mismatches. Items
    are checked again when read (corrupt data, label values >= K). Problems raise
    :class:`DatasetError` naming the file and the fix; files are never skipped silently.
    """

    def __init__(
        self,
        images: str | Path,
        labels: str | Path | None,
        size: int,
        seg_dim: int,
        hflip: bool = False,
        *,
        verify: bool = True,
    ):
        self.size, self.seg_dim, self.hflip = int(size), int(seg_dim), bool(hflip)
        if self.seg_dim > 256:
            raise ValueError(f"seg_dim={seg_dim} is too large (label PNGs hold at most 256 classes)")
        self.images_dir = Path(images)
        if not self.images_dir.is_dir():
            raise DatasetError(f"image folder {self.images_dir} does not exist or is not a folder")
        image_files = _scan(self.images_dir, IMAGE_SUFFIXES, "image")
        if not image_files:
            raise DatasetError(
                f"no images in {self.images_dir} (looked for {', '.join(IMAGE_SUFFIXES)} files directly "
                f"inside it, not in subfolders); put the training images there or pass another folder"
            )
        self.stems = sorted(image_files)
        self.image_files = [image_files[s] for s in self.stems]
        self.labels_dir = None if labels is None else Path(labels)
        self.has_labels = self.labels_dir is not None
        self.label_files: list[Path] | None = None
        if self.labels_dir is not None:
            self.label_files = self._match_labels(self.labels_dir, image_files)
        if verify:
            for i in range(len(self)):
                self.check_headers(i)

    @classmethod
    def from_files(cls, image_files: Sequence[Path], label_files: Sequence[Path] | None, size: int,
                   seg_dim: int) -> FolderDataset:
        """A dataset of already matched files (no folder scan, no header check; hflip off): for
        tools that check files one by one (``ssgan.datatools.inspect_folder``)."""
        ds = cls.__new__(cls)
        ds.size, ds.seg_dim, ds.hflip = int(size), int(seg_dim), False
        ds.image_files = list(image_files)
        ds.stems = [p.stem for p in ds.image_files]
        ds.images_dir = ds.image_files[0].parent if ds.image_files else Path(".")
        ds.label_files = None if label_files is None else list(label_files)
        ds.labels_dir = None if label_files is None or not ds.label_files else ds.label_files[0].parent
        ds.has_labels = label_files is not None
        return ds

    def _match_labels(self, folder: Path, image_files: dict[str, Path]) -> list[Path]:
        if not folder.is_dir():
            raise DatasetError(
                f"label folder {folder} does not exist or is not a folder; pass the folder of label "
                f"PNGs, or no labels for image-only data"
            )
        lossy = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
                 and p.suffix.lower() != ".png" and not p.name.startswith(".")]
        if lossy:
            raise DatasetError(
                f"label folder {folder} holds non-PNG files: {_names(lossy)}; labels must be PNGs of "
                f"class indices (lossy formats corrupt them); re-export them as PNG"
            )
        label_files = _scan(folder, (".png",), "label")
        if not label_files:
            raise DatasetError(f"no label PNGs in {folder}; add <stem>.png per image or omit labels")
        missing = [image_files[s] for s in sorted(set(image_files) - set(label_files))]
        if missing:
            raise DatasetError(
                f"{len(missing)} image(s) have no label in {folder}: {_names(missing)}; every image "
                f"needs a label <stem>.png, so add them or remove those images"
            )
        orphans = [label_files[s] for s in sorted(set(label_files) - set(image_files))]
        if orphans:
            raise DatasetError(
                f"{len(orphans)} label(s) have no image in {self.images_dir}: {_names(orphans)}; add "
                f"the images or remove those labels"
            )
        return [label_files[s] for s in self.stems]

    def __len__(self) -> int:
        return len(self.image_files)

    # -- checks -------------------------------------------------------------------------------

    @staticmethod
    def _bad_image(path: Path, err: BaseException) -> DatasetError:
        return DatasetError(f"cannot read image {path}: {err} (re-export or delete it)")

    def _label_mode_error(self, path: Path, mode: str, bands: int) -> DatasetError:
        return DatasetError(
            f"label {path} has mode {mode} ({bands} channel(s)) but labels must be single-channel "
            f"class indices (PNG mode L or P); convert colour-coded labels to index PNGs"
        )

    def _shape_error(self, image: Path, isize: tuple[int, int], label: Path,
                     lsize: tuple[int, int]) -> DatasetError:
        return DatasetError(
            f"image {image} is {isize[0]}x{isize[1]} but its label {label} is {lsize[0]}x{lsize[1]}; "
            f"they must show the same area (equal size, or the same aspect ratio at another scale); "
            f"re-export the label at the image's size"
        )

    def check_headers(self, index: int) -> None:
        """Read the headers of item ``index``'s files (no decoding); raise :class:`DatasetError`
        for an unreadable image, a label that is not single-channel or a shape mismatch."""
        path = self.image_files[index]
        try:
            with Image.open(path) as im:
                isize = im.size
        except _PIL_ERRORS as e:
            raise self._bad_image(path, e) from e
        if self.label_files is None:
            return
        lpath = self.label_files[index]
        try:
            with Image.open(lpath) as lm:
                lmode, lsize, bands = lm.mode, lm.size, len(lm.getbands())
        except _PIL_ERRORS as e:
            raise DatasetError(f"cannot read label {lpath}: {e} (re-export or delete it)") from e
        if lmode not in ("L", "P"):
            raise self._label_mode_error(lpath, lmode, bands)
        if not _same_area(isize, lsize):
            raise self._shape_error(path, isize, lpath, lsize)

    # -- loading ------------------------------------------------------------------------------

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        size = self.size
        path = self.image_files[index]
        try:
            with Image.open(path) as im:
                isize = im.size
                if im.format == "JPEG" and min(isize) > 2 * size:
                    im.draft("RGB", (2 * size, 2 * size))
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.LANCZOS)
                image = np.asarray(im)
        except _PIL_ERRORS as e:
            raise self._bad_image(path, e) from e
        if self.label_files is None:
            return image, None
        lpath = self.label_files[index]
        try:
            with Image.open(lpath) as lm:
                if lm.mode not in ("L", "P"):
                    raise self._label_mode_error(lpath, lm.mode, len(lm.getbands()))
                if not _same_area(isize, lm.size):
                    raise self._shape_error(path, isize, lpath, lm.size)
                label = np.asarray(lm)
                top = int(label.max())
                if top >= self.seg_dim:
                    raise DatasetError(
                        f"label {lpath} holds class {top} but the model has seg_dim={self.seg_dim} "
                        f"classes (values 0..{self.seg_dim - 1}); set the class count with --seg-dim "
                        f"N (train.py) or a classes.json in the data folder listing the class names, "
                        f"or check the label encoding (python -m ssgan.data inspect DIR)"
                    )
                if lm.size != (size, size):
                    label = np.asarray(lm.resize((size, size), Image.Resampling.NEAREST))
        except DatasetError:
            raise
        except _PIL_ERRORS as e:
            raise DatasetError(f"cannot read label {lpath}: {e} (re-export or delete it)") from e
        return image, label.astype(np.uint8, copy=False)


# ------------------------------------------------------------------------------------------------
# In-memory cache
# ------------------------------------------------------------------------------------------------


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


class _RawView(Dataset):
    def __init__(self, base: _ItemDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        image, label = self.base._load(index)
        return index, image, label


def _identity(x: Any) -> Any:
    return x


class CachedDataset(_ItemDataset):
    """Decode a dataset once into uint8 tensors in memory, then serve items without file I/O.

    Holds ``images`` (uint8 ``(N, H, W, 3)``) and, with labels, ``labels`` (uint8 ``(N, H, W)``):
    ``N * H * W * 4`` bytes with labels (3 without), e.g. 30 000 images at 256 px: 7.3 GiB,
    at 128 px: 1.8 GiB, at 512 px: 29 GiB. Raises :class:`DatasetError` when that exceeds
    ``max_bytes`` (default: half the machine's physical memory). The random horizontal flip of
    the wrapped dataset is applied per item as before (the cache holds unflipped data).
    ``workers`` > 0 decodes in parallel worker processes. DataLoader workers forked later share
    the cache copy-on-write.
    """

    def __init__(self, dataset: _ItemDataset, *, workers: int = 0, max_bytes: int | None = None,
                 progress: bool = False):
        if not isinstance(dataset, _ItemDataset):
            raise TypeError(f"CachedDataset wraps the datasets of ssgan.data, not {type(dataset).__name__}")
        self.size, self.seg_dim, self.hflip = dataset.size, dataset.seg_dim, dataset.hflip
        self.has_labels = dataset.has_labels
        n, s = len(dataset), dataset.size
        need = n * s * s * (4 if self.has_labels else 3)
        if max_bytes is None:
            phys = _physical_memory()
            max_bytes = phys // 2 if phys else need
        if need > max_bytes:
            raise DatasetError(
                f"caching {n} images at {s} px needs {need / 2**30:.1f} GiB but the limit is "
                f"{max_bytes / 2**30:.1f} GiB; train without the cache (more loader workers instead) "
                f"or at a lower size"
            )
        self.images = torch.empty((n, s, s, 3), dtype=torch.uint8)
        self.labels = torch.empty((n, s, s), dtype=torch.uint8) if self.has_labels else None
        loader = DataLoader(_RawView(dataset), batch_size=None, shuffle=False, num_workers=workers,
                            collate_fn=_identity)
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, total=n, desc="caching", unit="img")
        for i, image, label in loader:
            self.images[i].numpy()[...] = image
            if self.labels is not None:
                self.labels[i].numpy()[...] = label

    def __len__(self) -> int:
        return self.images.shape[0]

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        label = None if self.labels is None else self.labels[index].numpy()
        return self.images[index].numpy(), label


# ------------------------------------------------------------------------------------------------
# Opening datasets and loading batches
# ------------------------------------------------------------------------------------------------


def open_dataset(
    data: str | None,
    images: str | None,
    labels: str | None,
    size: int,
    seg_dim: int,
    hflip: bool = False,
    seed: int = 0,
    length: int = 10000,
    *,
    cache: bool = False,
    cache_workers: int = 0,
) -> _ItemDataset:
    """The dataset the command-line options describe.

    * nothing (or ``data="synthetic"`` when no such folder exists): :class:`~ssgan.synthetic.SyntheticFaces`
      of ``length`` items drawn with ``seed``;
    * ``data=DIR``: images from ``DIR/images``, labels from ``DIR/labels`` when that folder
      exists, otherwise image-only data;
    * ``images`` / ``labels``: explicit folders, overriding those under ``data``; ``images``
      without ``labels`` (and without ``DIR/labels``) is image-only data.

    ``cache=True`` wraps the result in :class:`CachedDataset` (see its memory needs).
    """
    from ssgan.synthetic import SyntheticFaces  # here: ssgan.synthetic imports this module

    if data is None and images is None:
        if labels is not None:
            raise DatasetError("a label folder was given without images; pass --images or --data too")
        ds: _ItemDataset = SyntheticFaces(size, length, seed, seg_dim, hflip=hflip)
    elif data == "synthetic" and images is None and labels is None and not Path(data).exists():
        ds = SyntheticFaces(size, length, seed, seg_dim, hflip=hflip)
    else:
        root = None if data is None else Path(data)
        if root is not None and not root.is_dir():
            raise DatasetError(f"data folder {root} does not exist or is not a folder")
        if images is not None:
            img_dir = Path(images)
        else:
            img_dir = root / "images"
            if not img_dir.is_dir():
                raise DatasetError(
                    f"{root} has no images/ folder; expected {root}/images (and optionally "
                    f"{root}/labels), or pass the image folder explicitly (--images)"
                )
        if labels is not None:
            lab_dir: Path | None = Path(labels)
        elif root is not None and (root / "labels").is_dir():
            lab_dir = root / "labels"
        else:
            lab_dir = None
        ds = FolderDataset(img_dir, lab_dir, size, seg_dim, hflip)
    if cache:
        ds = CachedDataset(ds, workers=cache_workers, progress=True)
    return ds


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssgan.data {celebamask,synthetic,from-colors,inspect} ...``; returns the exit
    status (the last two live in :mod:`ssgan.datatools`)."""
    parser = argparse.ArgumentParser(prog="python -m ssgan.data", description="Prepare training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("celebamask", help="CelebAMask-HQ part masks -> 13-class label PNGs")
    p.add_argument("anno_dir", help="the CelebAMask-HQ-mask-anno folder (subfolders 0 .. 14)")
    p.add_argument("out_dir", help="where to write <id>.png labels (e.g. DATA/labels)")
    p.add_argument("--size", type=int, default=512, help="mask size in pixels (default 512)")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (default 0: this one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("synthetic", help="write the built-in dataset as images/ and labels/ folders")
    s.add_argument("out_dir")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--seg-dim", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    from ssgan import datatools  # here: the subcommands' modules import this one
    from ssgan.celebamask import celebamask_labels
    from ssgan.synthetic import export_synthetic

    datatools.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command in datatools.COMMANDS:
            return datatools.run(args)
        if args.command == "celebamask":
            n = celebamask_labels(args.anno_dir, args.out_dir, args.size, not args.quiet, args.workers)
            print(f"wrote {n} labels to {args.out_dir}")
        else:
            export_synthetic(args.out_dir, args.n, args.size, args.seed, args.seg_dim)
            print(f"wrote {args.n} images and labels to {args.out_dir}")
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
