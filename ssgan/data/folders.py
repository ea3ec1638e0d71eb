"""Image/label folders, the in-memory cache and :func:`open_dataset` (what ``--data``,
``--images`` and ``--labels`` describe). The item format is in :mod:`ssgan.data.base`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ssgan.data.base import IMAGE_SUFFIXES, PIL_ERRORS, DatasetError, ItemDataset, check_pixels, scan_folder
from ssgan.data.faces import ProceduralFaces
from ssgan.data.synthetic import SyntheticFaces

# ------------------------------------------------------------------------------------------------
# Image / label folders
# ------------------------------------------------------------------------------------------------


def _names(paths: Sequence[Path], limit: int = 5) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else f" ({len(paths)} in all)")




def _same_area(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Equal aspect ratio (to 1 %): the same picture at possibly different scales."""
    return abs(a[0] * b[1] - a[1] * b[0]) <= 0.01 * a[0] * b[1]


class FolderDataset(ItemDataset):
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
        image_files = scan_folder(self.images_dir, IMAGE_SUFFIXES, "image")
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
        tools that check files one by one (``ssgan.data.tools.inspect_folder``)."""
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
        label_files = scan_folder(folder, (".png",), "label")
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
        except PIL_ERRORS as e:
            raise self._bad_image(path, e) from e
        if self.label_files is None:
            return
        lpath = self.label_files[index]
        try:
            with Image.open(lpath) as lm:
                lmode, lsize, bands = lm.mode, lm.size, len(lm.getbands())
        except PIL_ERRORS as e:
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
                check_pixels(im)
                isize = im.size
                if im.format == "JPEG" and min(isize) > 2 * size:
                    im.draft("RGB", (2 * size, 2 * size))
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.LANCZOS)
                image = np.asarray(im)
        except PIL_ERRORS as e:
            raise self._bad_image(path, e) from e
        if self.label_files is None:
            return image, None
        lpath = self.label_files[index]
        try:
            with Image.open(lpath) as lm:
                check_pixels(lm)
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
                        f"or check the label encoding (ssgan data inspect DIR)"
                    )
                if lm.size != (size, size):
                    label = np.asarray(lm.resize((size, size), Image.Resampling.NEAREST))
        except DatasetError:
            raise
        except PIL_ERRORS as e:
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
    def __init__(self, base: ItemDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        image, label = self.base._load(index)
        return index, image, label


def _identity(x: Any) -> Any:
    return x


class CachedDataset(ItemDataset):
    """Decode a dataset once into uint8 tensors in memory, then serve items without file I/O.

    Holds ``images`` (uint8 ``(N, H, W, 3)``) and, with labels, ``labels`` (uint8 ``(N, H, W)``):
    ``N * H * W * 4`` bytes with labels (3 without), e.g. 30 000 images at 256 px: 7.3 GiB,
    at 128 px: 1.8 GiB, at 512 px: 29 GiB. Raises :class:`DatasetError` when that exceeds
    ``max_bytes`` (default: half the machine's physical memory). The random horizontal flip of
    the wrapped dataset is applied per item as before (the cache holds unflipped data).
    ``workers`` > 0 decodes in parallel worker processes. DataLoader workers forked later share
    the cache copy-on-write.
    """

    def __init__(self, dataset: ItemDataset, *, workers: int = 0, max_bytes: int | None = None,
                 progress: bool = False):
        if not isinstance(dataset, ItemDataset):
            raise TypeError(f"CachedDataset wraps the datasets of ssgan.data, not {type(dataset).__name__}")
        self.size, self.seg_dim, self.hflip = dataset.size, dataset.seg_dim, dataset.hflip
        self.has_labels, self.class_names = dataset.has_labels, dataset.class_names
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


#: The built-in datasets by their ``--data`` word (used when no folder of that name exists).
BUILT_IN: dict[str, type[ItemDataset]] = {"synthetic": SyntheticFaces, "faces": ProceduralFaces}


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
) -> ItemDataset:
    """The dataset the command-line options describe.

    * nothing (or ``data="synthetic"`` when no such folder exists):
      :class:`~ssgan.data.synthetic.SyntheticFaces` of ``length`` items drawn with ``seed``;
    * ``data="faces"`` (when no such folder exists): :class:`~ssgan.data.faces.ProceduralFaces`
      likewise (9 classes: ``seg_dim`` must be 9, e.g. ``--preset small``);
    * ``data=DIR``: images from ``DIR/images``, labels from ``DIR/labels`` when that folder
      exists, otherwise image-only data;
    * ``images`` / ``labels``: explicit folders, overriding those under ``data``; ``images``
      without ``labels`` (and without ``DIR/labels``) is image-only data.

    ``cache=True`` wraps the result in :class:`CachedDataset` (see its memory needs).
    """
    if data is None and images is None:
        if labels is not None:
            raise DatasetError("a label folder was given without images; pass --images or --data too")
        ds: ItemDataset = SyntheticFaces(size, length, seed, seg_dim, hflip=hflip)
    elif data in BUILT_IN and images is None and labels is None and not Path(data).exists():
        ds = BUILT_IN[data](size, length, seed, seg_dim, hflip=hflip)
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
