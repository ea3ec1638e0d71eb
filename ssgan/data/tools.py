"""Preparing and checking a segmented dataset before training: colour-coded label maps to index
PNGs, and a report of what a data folder holds.

    ssgan data from-colors LABELS_DIR OUT_DIR --colors classes.json
    ssgan data inspect DIR [--size 256] [--out DIR/inspect.png]

``from-colors`` reads the class colours from a classes.json (see :mod:`ssgan.classes`) that gives
a colour to every class, or from a plain JSON object ``{"name": [r, g, b], ...}`` / list
``[[r, g, b], ...]`` in class-index order. Pixel p of ``LABELS_DIR/<stem>.<ext>`` becomes class k
where colour(p) = colors[k] exactly; any other colour stops the conversion naming the file, the
pixel and the colour. Everything is converted into a temporary folder beside ``OUT_DIR`` that is
renamed to ``OUT_DIR`` only when every file succeeded: nothing is ever half-written.

``inspect`` reports, for ``DIR/images`` (+ ``DIR/labels``, ``DIR/classes.json``): the number of
images and labels, the resolutions seen, per class the share of all label pixels (at the training
``--size``) and the share of images it appears in, and every file that would stop training, with
the reason; and writes a PNG of a few images beside their coloured masks with a legend.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ssgan import visualize as V
from ssgan.classes import ClassesError, ClassInfo, default_names, find_classes, read_classes
from ssgan.data.base import IMAGE_SUFFIXES, PIL_ERRORS, DatasetError, scan_folder
from ssgan.data.folders import FolderDataset


# ------------------------------------------------------------------------------------------------
# from-colors
# ------------------------------------------------------------------------------------------------
def read_colors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(names, (K, 3) uint8 colours) from a classes.json with a colour for every class, an object
    ``{name: [r, g, b]}`` in index order, or a list of ``[r, g, b]``. One-line ``ClassesError``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ClassesError(f"cannot read {path}: {e}") from None
    if isinstance(data, dict) and "classes" in data:
        info = read_classes(path)
        missing = [n for i, n in enumerate(info.names) if i not in info.colors]
        if missing:
            raise ClassesError(f'{path}: "colors" gives no colour to {", ".join(missing)}; from-colors '
                               f"needs the colour of every class")
        names, colors = list(info.names), [list(info.colors[i]) for i in range(info.k)]
    elif isinstance(data, dict) and data:
        names, colors = list(data), list(data.values())
    elif isinstance(data, list) and data:
        names, colors = list(default_names(len(data))), data
    else:
        raise ClassesError(f"{path} must hold a classes.json with colours, {{name: [r, g, b]}} or "
                           f"[[r, g, b], ...]")
    table = np.zeros((len(colors), 3), np.uint8)
    for i, c in enumerate(colors):
        if (not isinstance(c, list) or len(c) != 3
                or not all(isinstance(v, int) and 0 <= v <= 255 for v in c)):
            raise ClassesError(f"{path}: the colour of {names[i]} must be [r, g, b] with integers "
                               f"0..255, not {c!r}")
        table[i] = c
    keys = _keys(table)
    dup = [names[i] for i in range(len(keys)) if (keys == keys[i]).sum() > 1]
    if dup:
        raise ClassesError(f"{path}: classes {', '.join(dup)} share a colour; every class needs its own")
    if len(names) > 256:
        raise ClassesError(f"{path}: {len(names)} classes, but label PNGs hold at most 256")
    return names, table


def _keys(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 r·65536 + g·256 + b."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


def colors_to_index(rgb: np.ndarray, table: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) uint8 class indices by exact match with ``table``.
    An unknown colour raises ``DatasetError`` naming ``path``, the first such pixel and its colour."""
    keys, known = _keys(rgb), _keys(table)
    order = np.argsort(known)
    pos = np.clip(np.searchsorted(known[order], keys), 0, len(known) - 1)
    index = order[pos]
    bad = known[index] != keys
    if bad.any():
        y, x = (int(v[0]) for v in np.nonzero(bad))
        n = int(bad.sum())
        colour = tuple(int(v) for v in rgb[y, x])
        raise DatasetError(f"label {path}: pixel (x={x}, y={y}) has colour {colour}, "
                           f"which is no class's colour ({n} pixel(s) in this file); add it to the colours "
                           f"file or fix the label (lossy formats such as JPEG blur colours)")
    return index.astype(np.uint8)


def from_colors(labels_dir: str | Path, out_dir: str | Path, colors: str | Path,
                progress: bool = True) -> int:
    """Convert every colour-coded label of ``labels_dir`` to ``out_dir/<stem>.png`` index PNGs
    (mode L). ``out_dir`` must not exist or be empty; it appears complete or not at all. Returns
    the number of files written."""
    src, out = Path(labels_dir), Path(out_dir)
    _, table = read_colors(colors)
    if not src.is_dir():
        raise DatasetError(f"label folder {src} does not exist or is not a folder")
    files = scan_folder(src, IMAGE_SUFFIXES, "label")
    if not files:
        raise DatasetError(f"no label images in {src} (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not an empty folder; choose a new OUT_DIR")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for stem, path in tqdm(sorted(files.items()), desc="from-colors", unit="img", disable=not progress):
            try:
                with Image.open(path) as im:
                    rgb = np.asarray(im.convert("RGB"))
            except PIL_ERRORS as e:
                raise DatasetError(f"cannot read label {path}: {e} (re-export or delete it)") from e
            Image.fromarray(colors_to_index(rgb, table, path)).save(tmp / f"{stem}.png")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return len(files)


# ------------------------------------------------------------------------------------------------
# inspect
# ------------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What :func:`inspect_folder` found."""

    root: Path
    classes: ClassInfo
    classes_file: Path | None
    n_images: int = 0
    n_labels: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    label_sizes: Counter = field(default_factory=Counter)
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # per class value
    present: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # images containing it
    problems: list[str] = field(default_factory=list)  # one line per file that would fail training
    good: list[int] = field(default_factory=list)  # dataset indices that loaded

    @property
    def max_label(self) -> int:
        seen = np.nonzero(self.pixels)[0]
        return int(seen[-1]) if len(seen) else -1


def inspect_folder(root: str | Path, size: int = 256, seg_dim: int | None = None,
                   progress: bool = True) -> tuple[Report, FolderDataset | None]:
    """Read every image and label of ``root`` (``images/``, optional ``labels/`` and
    ``classes.json``) as training would at ``size`` px; collect statistics and problems instead of
    stopping at the first. K: ``seg_dim``, else classes.json's, else the largest label + 1."""
    root = Path(root)
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir():
        raise DatasetError(f"{root} has no images/ folder; expected {root}/images (and optionally "
                           f"{root}/labels and {root}/classes.json)")
    classes_file = find_classes(root)
    info = read_classes(classes_file) if classes_file else None
    images = scan_folder(img_dir, IMAGE_SUFFIXES, "image")
    labels = scan_folder(lab_dir, IMAGE_SUFFIXES, "label") if lab_dir.is_dir() else None
    report = Report(root, info or ClassInfo(()), classes_file, len(images), len(labels or {}))
    if labels is not None:
        report.problems += [f"{images[s]}: no label {lab_dir}/{s}.png"
                            for s in sorted(set(images) - set(labels))]
        report.problems += [f"{labels[s]}: a label without an image in {img_dir}"
                            for s in sorted(set(labels) - set(images))]
        report.problems += [f"{labels[s]}: labels must be PNG (lossy formats corrupt class indices)"
                            for s in sorted(labels) if labels[s].suffix.lower() != ".png"]
    stems = sorted(set(images) & set(labels)) if labels is not None else sorted(images)
    if not stems:
        report.problems.append(f"{img_dir}: no image with a label: nothing to train on")
        return report, None
    k_check = seg_dim or (info.k if info else 256)
    ds = FolderDataset.from_files([images[s] for s in stems],
                                  None if labels is None else [labels[s] for s in stems], size, k_check)
    for files, sizes in ((images, report.image_sizes), (labels or {}, report.label_sizes)):
        for path in files.values():  # headers only; unreadable files are reported below
            try:
                with Image.open(path) as im:
                    sizes[im.size] += 1
            except PIL_ERRORS:
                pass
    for i in tqdm(range(len(ds)), desc="inspect", unit="img", disable=not progress):
        try:
            ds.check_headers(i)
            _, label = ds._load(i)
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        except PIL_ERRORS as e:
            report.problems.append(f"cannot read {ds.image_files[i]} or its label: {e}")
            continue
        report.good.append(i)
        if label is not None:
            counts = np.bincount(label.ravel(), minlength=256)
            report.pixels += counts
            report.present += counts > 0
    k = seg_dim or (info.k if info else report.max_label + 1)
    if info is None or info.k != k:
        report.classes = ClassInfo(default_names(max(k, 0)))
    return report, ds


def format_report(report: Report) -> str:
    """The report as a readable text table."""
    info = report.classes
    lines = [f"data folder {report.root}",
             f"  images: {report.n_images}   labels: {report.n_labels}   usable pairs: {len(report.good)}",
             "  image sizes: " + _sizes(report.image_sizes),
             "  label sizes: " + _sizes(report.label_sizes)]
    if report.classes_file:
        lines.append(f"  classes: {info.k} from {report.classes_file}")
    elif report.n_labels:
        lines.append(f"  classes: no classes.json; labels use 0..{report.max_label}: train with "
                     f"--seg-dim {report.max_label + 1} (or write {report.root}/classes.json with the names)")
        unused = report.max_label + 1 - int((report.pixels > 0).sum())
        if unused:
            lines.append(f"  {unused} value(s) below {report.max_label} never appear: if {report.max_label} "
                         f"marks 'ignore' pixels, map it to a class first")
    else:
        lines.append("  no labels/ folder: image-only data (domain adaptation; no segmentation branch)")
    if report.n_labels and len(report.good):
        total = max(1, int(report.pixels.sum()))
        n = len(report.good)
        width = max([len(n_) for n_ in info.names] + [5])
        lines.append(f"\n  {'k':>3}  {'class':<{width}}  {'pixels %':>8}  {'in images %':>11}  note")
        rows = max(info.k, report.max_label + 1)
        hidden = 0
        for i in range(rows):
            if rows > 32 and report.classes_file is None and report.pixels[i] == 0:
                hidden += 1  # e.g. labels using 255 as "ignore": no 200 empty rows
                continue
            name = info.names[i] if i < info.k else "?"
            note = []
            if i in info.transparent:
                note.append("transparent")
            if report.present[i] == 0:
                note.append("never appears")
            if i >= info.k:
                note.append(f"beyond the {info.k} classes")
            lines.append(f"  {i:>3}  {name:<{width}}  {100 * report.pixels[i] / total:8.2f}  "
                         f"{100 * report.present[i] / n:11.1f}  {', '.join(note)}".rstrip())
        if hidden:
            lines.append(f"  ({hidden} class values below {rows} never appear and are not listed)")
    if report.problems:
        lines.append(f"\n  {len(report.problems)} problem(s) that would stop training:")
        lines += [f"  - {p}" for p in report.problems[:20]]
        if len(report.problems) > 20:
            lines.append(f"  ... and {len(report.problems) - 20} more")
    else:
        lines.append("\n  no problems found: every file loads as training reads it")
    return "\n".join(lines)


def _sizes(counter: Counter) -> str:
    if not counter:
        return "-"
    return ", ".join(f"{w}x{h} ({n})" for (w, h), n in counter.most_common(5)) + (
        f", ... ({len(counter)} sizes)" if len(counter) > 5 else "")


def preview(report: Report, ds: FolderDataset, n: int = 8, tile: int = 128) -> np.ndarray:
    """Up to ``n`` usable items: images in the top row, their coloured masks beneath, a legend."""
    picks = report.good[:: max(1, len(report.good) // n)][:n]
    colors = V.palette(report.classes.k, report.classes.colors)
    images, masks = [], []
    for i in picks:
        image, label = ds._load(i)
        images.append(np.asarray(Image.fromarray(image).resize((tile, tile), Image.Resampling.LANCZOS)))
        if label is not None:
            masks.append(V.resize_nearest(V.colorize(torch.from_numpy(label[None].copy()), colors), tile)[0])
    figure = V.grid(np.stack(images + masks), ncol=len(picks))
    if not masks:
        return figure
    return V.with_legend(figure, report.classes.names, colors, report.classes.transparent)
