"""Provenance of every picture ssgan writes: an XMP record saying it is synthetic (IPTC digital
source type, software, generator digest, action), an invisible watermark in the pixels of
generated and edited images, and ``ssgan detect`` (docs/provenance.md).

Every image writer calls :func:`save_image` (files) or :func:`encode_image` (bytes, e.g. the
editor's downloads). Modules: ``record`` (:class:`Provenance`, the IPTC source types), ``xmp``
(the packet), ``watermark`` (embed / extract), ``detect`` (what a file carries).

Layer 3 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model, classes.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, PngImagePlugin

from ssgan.provenance import watermark, xmp
from ssgan.provenance.record import (
    ALGORITHMIC,
    COMPOSITE,
    DATA_FIGURE,
    SYNTHETIC,
    TRAINED,
    Provenance,
    software,
)

__all__ = ["ALGORITHMIC", "COMPOSITE", "DATA_FIGURE", "FORMATS", "SYNTHETIC", "TRAINED", "Provenance",
           "Signer",
           "encode_image", "mark", "save_image", "software"]

#: File suffix → PIL format of the images ssgan writes. GIF takes (N, H, W, 3) frames.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}


class Signer(Protocol):
    """Content credentials (C2PA) for a written file (``ssgan.provenance.c2pa_sign.C2PASigner``)."""

    def sign(self, path: Path, prov: Provenance, ingredient: Path | None) -> None: ...


def mark(image: np.ndarray, prov: Provenance) -> tuple[np.ndarray, Provenance]:
    """``image`` (H, W, 3) or frames (N, H, W, 3) uint8 with the watermark when ``prov`` asks for
    it, the picture holds generated content (:data:`SYNTHETIC`) and is at least
    :data:`watermark.MIN_SIZE` px on each side; and the record of what was done (``watermark``
    False when it was not)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if not (prov.watermark and prov.source_type in SYNTHETIC
            and min(image.shape[-3:-1]) >= watermark.MIN_SIZE):
        return image, replace(prov, watermark=False)
    frames = image.reshape(-1, *image.shape[-3:])
    marked = np.stack([watermark.embed(f, prov.key_id) for f in frames]).reshape(image.shape)
    return marked, prov


def encode_image(image: np.ndarray, prov: Provenance, fmt: str = "PNG", frame_ms: int = 80) -> bytes:
    """``image`` encoded as ``fmt`` (PNG, JPEG, WEBP; GIF for (N, H, W, 3) frames shown
    ``frame_ms`` each) with :func:`mark`'s watermark and the XMP record. JPEG and WebP are written
    at quality 95 (JPEG with 4:4:4 chroma)."""
    return _encode(*mark(image, prov), fmt, frame_ms)


def _encode(pixels: np.ndarray, prov: Provenance, fmt: str, frame_ms: int) -> bytes:
    packet = xmp.packet(prov)
    buf = io.BytesIO()
    if fmt == "GIF":
        frames = [Image.fromarray(f) for f in pixels.reshape(-1, *pixels.shape[-3:])]
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms,
                       loop=0, comment=packet)
    elif fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet.decode())
        Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info)
    elif fmt in ("JPEG", "WEBP"):
        extra = {"subsampling": 0} if fmt == "JPEG" else {}
        Image.fromarray(pixels).save(buf, format=fmt, quality=95, xmp=packet, **extra)
    else:
        raise ValueError(f"ssgan writes PNG, JPEG, WEBP or GIF images, not {fmt}")
    return buf.getvalue()


def save_image(image: np.ndarray, path: str | os.PathLike, prov: Provenance, *, c2pa: Signer | None = None,
               ingredient: Path | None = None, frame_ms: int = 80) -> Path:
    """Write ``image`` ((H, W, 3) uint8; (N, H, W, 3) frames for ``.gif``) to ``path`` in the format
    its suffix names (:data:`FORMATS`), watermarked and with its XMP record
    (:func:`encode_image`), signed by ``c2pa`` when given (``ingredient``: the photo an edit
    started from); atomically (a temp file in the same folder, then a rename)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: ssgan writes {', '.join(FORMATS)} images; change the file's suffix")
    pixels, prov = mark(image, prov)
    data = _encode(pixels, prov, fmt, frame_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if c2pa is not None:
            c2pa.sign(Path(tmp), prov, ingredient)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
