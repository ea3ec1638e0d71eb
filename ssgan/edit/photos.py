"""Real photographs (and their label maps) as targets for inversion.

Images are found from files and folders (not recursive; the suffixes of
:data:`ssgan.data.IMAGE_SUFFIXES`), turned upright by their EXIF orientation, converted to RGB and
resized to the model's size with LANCZOS as training data are, with a note when resized. A label
is ``<labels>/<stem>.png``: one channel (PNG mode L or P) of class indices 0..K−1, the same aspect
ratio as its image, resized with NEAREST. Every problem raises :class:`~ssgan.data.DatasetError`
naming the file and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ssgan.data.base import IMAGE_SUFFIXES, PIL_ERRORS, DatasetError, check_pixels


@dataclass
class Photos:
    """Targets: ``images`` (N, 3, S, S) in [−1, 1], ``labels`` (N, S, S) int64 or None, the file
    ``stems`` (output names), the ``files``, any ``notes`` (resized inputs) and, when read with
    ``skip_bad``, the one-line ``errors`` of the files left out."""

    images: torch.Tensor
    labels: torch.Tensor | None
    stems: list[str]
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named by ``inputs`` (files, or folders whose image files are taken), sorted per
    folder; raises DatasetError for a missing path, an empty folder or two files with one stem."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                           and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DatasetError(f"no images in {p} (looked for {', '.join(IMAGE_SUFFIXES)} files directly "
                                   f"inside it); pass image files or a folder that holds them")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"image {p} does not exist; pass image files or folders")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise DatasetError(f"two images share the stem {f.stem!r}: {seen[f.stem]} and {f}; outputs are "
                               f"named by stem, so rename one")
        seen[f.stem] = f
    if not files:
        raise DatasetError("no images given")
    return files


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def check_colour(im: Image.Image, path: Path) -> None:
    """Refuse what the RGB generator cannot be asked to match: greyscale images (the reconstruction
    would be judged against grey) and images with transparent pixels (what lies behind them is
    undefined). Raises DatasetError naming the file and the fix."""
    if im.mode in GREY_MODES or (im.mode == "P" and im.palette is not None and im.palette.mode == "L"):
        raise DatasetError(f"image {path} is greyscale (mode {im.mode}) but the generator paints RGB; "
                           f"save it as an RGB image to invert it anyway")
    if im.mode in ("RGBA", "PA") or (im.mode == "P" and "transparency" in im.info):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if int(alpha.min()) < 255:
            raise DatasetError(f"image {path} has transparent pixels ({int((alpha < 255).sum())} of them); "
                               f"flatten it onto a background (e.g. save it as JPEG or RGB PNG)")


def read_photo(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(size, size, 3) uint8 RGB of the image file and its original (width, height); greyscale or
    transparent images are refused (:func:`check_colour`)."""
    try:
        with Image.open(path) as im:
            check_pixels(im)
            im = ImageOps.exif_transpose(im)  # phone photos: apply the EXIF orientation
            original = im.size
            check_colour(im, path)
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(im), original
    except DatasetError:
        raise
    except PIL_ERRORS as e:
        raise DatasetError(f"cannot read image {path}: {e} (re-export it as PNG or JPEG)") from None


def read_label(path: Path, image: Path, image_size: tuple[int, int], size: int, seg_dim: int) -> np.ndarray:
    """(size, size) uint8 class indices of the label PNG ``path`` for ``image``."""
    if not path.is_file():
        raise DatasetError(f"image {image} has no label {path}; add <stem>.png to the label folder or drop "
                           f"--labels")
    try:
        with Image.open(path) as lm:
            check_pixels(lm)
            if lm.mode not in ("L", "P"):
                raise DatasetError(f"label {path} has mode {lm.mode} but labels must be single-channel class "
                                   f"indices (PNG mode L or P); convert it to an index PNG")
            w, h = lm.size
            if abs(w * image_size[1] - h * image_size[0]) > 0.01 * w * image_size[1]:
                raise DatasetError(f"label {path} is {w}x{h} but its image {image} is "
                                   f"{image_size[0]}x{image_size[1]}; they must show the same area")
            label = np.asarray(lm.resize((size, size), Image.Resampling.NEAREST) if lm.size != (size, size)
                               else lm)
    except DatasetError:
        raise
    except PIL_ERRORS as e:
        raise DatasetError(f"cannot read label {path}: {e} (re-export it as an index PNG)") from None
    top = int(label.max())
    if top >= seg_dim:
        raise DatasetError(f"label {path} holds class {top} but the model has {seg_dim} classes "
                           f"(0..{seg_dim - 1}); relabel it for this model")
    return label.astype(np.uint8)


def load_photos(inputs: Sequence[str | os.PathLike], size: int, seg_dim: int,
                labels: str | os.PathLike | None = None, skip_bad: bool = False) -> Photos:
    """Read every image named by ``inputs`` (and its label from the folder ``labels``) at ``size``.

    A file that cannot be used raises DatasetError; with ``skip_bad`` it is left out instead and
    its one-line message goes to ``errors`` (DatasetError only when no image is usable)."""
    files = find_images(inputs)
    label_dir = None if labels is None else Path(labels)
    if label_dir is not None and not label_dir.is_dir():
        raise DatasetError(f"label folder {label_dir} does not exist; pass the folder of <stem>.png labels")
    images, maps, notes, kept, errors = [], [], [], [], []
    for f in files:
        try:
            image, original = read_photo(f, size)
            label = (None if label_dir is None
                     else read_label(label_dir / f"{f.stem}.png", f, original, size, seg_dim))
        except DatasetError as e:
            if not skip_bad:
                raise
            errors.append(str(e))
            continue
        if original != (size, size):
            notes.append(f"note: {f} is {original[0]}x{original[1]}; resized to {size}x{size} for this model")
        images.append(image)
        kept.append(f)
        if label is not None:
            maps.append(label)
    if not images:
        raise DatasetError(errors[0] if len(errors) == 1 else
                           f"none of the {len(files)} images can be used: " + "; ".join(errors))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.from_numpy(np.stack(maps)).long() if maps else None
    return Photos(x, y, [f.stem for f in kept], kept, notes, errors)
