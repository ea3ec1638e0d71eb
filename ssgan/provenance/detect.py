"""What a picture says about where it came from: its XMP record and its watermark, and a verdict
(``ssgan detect``).

A file is *marked* when its pixels carry a watermark whose payload checks out, or its XMP holds
ssgan's full record (any source type: a training-curve figure says it was drawn by code), or any
tool's XMP names a synthetic source type (:data:`record.SYNTHETIC`). Metadata is easy to strip and easy to
forge; the watermark survives re-encoding but not everything (docs/provenance.md).

Files with several frames other than GIF (video): :data:`FRAME_READERS` maps a file suffix to a
reader of (frames, XMP packet) (:func:`read_video` for ``.mp4``: its frames through
:func:`ssgan.provenance.video.read_frames` and its container's record as a packet);
:func:`inspect_file` then checks the frames' watermarks like a GIF's.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from ssgan.provenance import watermark, xmp
from ssgan.provenance.record import ALGORITHMIC, DATA_FIGURE, SYNTHETIC

#: Image suffixes :func:`files` collects from a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
#: At most this many frames of an animation or video are checked.
MAX_FRAMES = 32


class UnreadableError(Exception):
    """A file that is not a readable image (or video): its message names the file and the fix."""


@dataclass
class Report:
    """One file: the provenance fields its XMP holds, the watermark found in its frames (``frames``
    checked, ``frames_marked`` whose payload checked out, the key id most of them carry, the best
    confidence), the smaller side of the first frame, and the verdict."""

    path: str
    metadata: dict[str, str] = field(default_factory=dict)
    min_side: int = 0
    frames: int = 0
    frames_marked: int = 0
    key_id: int | None = None
    confidence: float = 0.0
    c2pa: dict[str, Any] | None = None  # the C2PA manifest's validation (read_manifest), None: no manifest
    c2pa_checked: bool = False  # False: c2pa-python is not installed, manifests were not looked for

    @property
    def watermarked(self) -> bool:
        return self.frames_marked > 0

    @property
    def marked(self) -> bool:
        return (self.watermarked or xmp.to_provenance(self.metadata) is not None
                or self.metadata.get("source_type") in SYNTHETIC)

    @property
    def verdict(self) -> str:
        meta = self.metadata.get("source_type")
        says = {ALGORITHMIC: "an ssgan figure drawn from numbers", DATA_FIGURE: "an ssgan sheet of your data",
                **dict.fromkeys(SYNTHETIC, "synthetic")}.get(meta) if self.marked else None
        if says and self.watermarked:
            return f"{says}: metadata and watermark"
        if says:
            why = (f"none under {watermark.MIN_SIZE} px" if self.min_side < watermark.MIN_SIZE
                   else "off, says its record" if self.metadata.get("watermark") == "false"
                   else "none found")
            return f"{says}: metadata only (watermark: {why})"
        if self.watermarked:
            return "synthetic: watermark only (metadata missing or stripped)"
        return "no ssgan mark found"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "metadata": self.metadata, "min_side": self.min_side,
                "frames": self.frames, "frames_marked": self.frames_marked, "key_id": self.key_id,
                "confidence": round(self.confidence, 4), "c2pa": self.c2pa, "c2pa_checked": self.c2pa_checked,
                "marked": self.marked, "verdict": self.verdict}


def _read(path: Path) -> tuple[list[np.ndarray], bytes | None]:
    """(RGB frames, XMP bytes) of an image file, at most :data:`MAX_FRAMES` frames."""
    try:
        with Image.open(path) as im:
            packet = im.info.get("xmp") or (im.info.get("comment") if im.format == "GIF" else None)
            frames = [np.asarray(f.convert("RGB"))
                      for f, _ in zip(ImageSequence.Iterator(im), range(MAX_FRAMES))]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableError(f"{path}: cannot read it as an image ({e}); pass a complete PNG, JPEG, "
                              f"WebP or GIF file") from None
    return frames, packet if isinstance(packet, bytes | str) else None


def read_video(path: Path) -> tuple[list[np.ndarray], bytes | None]:
    """(frames, XMP packet) of an mp4: at most :data:`MAX_FRAMES` frames spread over the video (every
    4th), and the provenance record of its container metadata as a packet (None without one)."""
    from ssgan.provenance import video

    try:
        frames = list(itertools.islice(video.read_frames(path, every=4), MAX_FRAMES))
        prov = video.video_provenance(path)
    except (video.VideoError, OSError, ValueError) as e:
        raise UnreadableError(" ".join(str(e).split())) from None  # names the file and the fix
    return frames, None if prov is None else xmp.packet(prov)


#: Suffix → reader of (frames, XMP packet) for multi-frame files other than GIF (module docstring).
FRAME_READERS: dict[str, Callable[[Path], tuple[list[np.ndarray], bytes | None]]] = {".mp4": read_video}


def inspect_file(path: str | os.PathLike) -> Report:
    """The :class:`Report` of one image (or, through :data:`FRAME_READERS`, video) file."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableError(f"{path}: no such file; pass an existing image file or folder")
    reader = FRAME_READERS.get(path.suffix.lower())
    frames, packet = (reader or _read)(path)
    side = min(frames[0].shape[:2]) if frames else 0
    report = Report(str(path), xmp.parse(packet) if packet else {}, side, len(frames))
    keys: list[int] = []
    for frame in frames:
        found = watermark.extract(frame)
        report.confidence = max(report.confidence, found.confidence)
        if found.payload_ok and found.key_id is not None:
            keys.append(found.key_id)
    report.frames_marked = len(keys)
    report.key_id = max(set(keys), key=keys.count) if keys else None
    report.c2pa_checked, report.c2pa = read_c2pa(path)
    return report


def read_c2pa(path: Path) -> tuple[bool, dict[str, Any] | None]:
    """(whether manifests could be looked for, the validation of ``path``'s C2PA manifest or None
    when it has none): :func:`ssgan.provenance.c2pa_sign.read_manifest`, offline, trusting
    ``$SSGAN_C2PA_TRUST``'s roots; a manifest that cannot be parsed is reported invalid."""
    try:
        import c2pa  # noqa: F401  (optional: pip install 'ssgan[c2pa]')
    except ImportError:
        return False, None
    from ssgan.provenance.c2pa_sign import C2PAError, read_manifest

    try:
        manifest = read_manifest(path)
    except C2PAError as e:
        return True, {"valid": False, "trusted": False, "errors": [str(e)]}
    return True, None if manifest is None else manifest.to_dict()


def files(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Each file target, and the image (and video) files under each folder target, sorted; a
    target that does not exist is kept (:func:`inspect_file` reports it)."""
    suffixes = (*IMAGE_SUFFIXES, *FRAME_READERS)
    out: list[Path] = []
    for t in map(Path, targets):
        if t.is_dir():
            out += sorted(p for p in t.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        else:
            out.append(t)
    return out
