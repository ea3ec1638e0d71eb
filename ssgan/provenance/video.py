"""Video files: H.264 mp4 whose container says the video is synthetic, and reading frames back.

Encoding goes through PyAV (the ``video`` extra), whose wheels bundle ffmpeg with libx264: no
system ffmpeg is needed. Frames are RGB uint8 (H, W, 3), all of one size; H.264's 4:2:0 chroma
needs even sides, so an odd side is padded by repeating its last row or column. Each frame goes
through ``mark_frame`` (the invisible watermark) before it is encoded.

The container's metadata (:func:`container_metadata`): ``comment`` and ``description`` say in words
that the video was made by a trained model, with the IPTC digital source type URI and the
software; ``digital_source_type``, ``software`` and ``ssgan_provenance`` (the
:class:`~ssgan.provenance.record.Provenance` record as JSON) are written as mp4 metadata keys
(ffmpeg's ``use_metadata_tags``), which ffprobe and exiftool list. Metadata is removed by any
re-encode that does not copy it: the watermark in the frames is what survives that.

Writing is atomic (a temporary file in the target's folder, renamed over it): the target is
either absent, the old file, or the whole new video.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm import tqdm

from ssgan.provenance.record import TRAINED, Provenance

#: The suffixes written (an mp4 container).
SUFFIXES = (".mp4",)

#: libx264's constant rate factor: 18 is visually lossless for most content (0 lossless, 51 worst).
CRF = 18


class VideoError(Exception):
    """A video that cannot be written or read: one line naming the file and the fix."""


def av_module() -> ModuleType:
    """PyAV, imported only when a video is written or read; missing, a :class:`VideoError`."""
    try:
        import av
    except ImportError:
        raise VideoError("videos need the PyAV package (it bundles ffmpeg): "
                         "pip install 'ssgan[video]'") from None
    return av


def check_video_path(path: str | os.PathLike, flag: str = "--video") -> Path:
    """``path`` if a video can be written there (an ``.mp4`` name in an existing folder), else a
    :class:`VideoError` naming ``flag``: called before any work is done."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise VideoError(f"{flag} {p}: videos are written as H.264 mp4; give a name ending in .mp4")
    if not p.parent.is_dir():
        raise VideoError(f"{flag} {p}: the folder {p.parent} does not exist; create it or choose another "
                         f"path")
    if p.is_dir():
        raise VideoError(f"{flag} {p} is a folder; give a file name ending in .mp4")
    return p


def container_metadata(prov: Provenance) -> dict[str, str]:
    """The mp4 metadata that says the video is synthetic (see the module's docstring)."""
    made = "by a trained model" if prov.source_type == TRAINED else "from a photo and a trained model"
    sentence = (f"Synthetic video made {made} with {prov.software}; IPTC digital source type "
                f"{prov.source_type}")
    return {"comment": sentence, "description": sentence, "digital_source_type": prov.source_type,
            "software": prov.software, "ssgan_provenance": json.dumps(prov.to_dict(), sort_keys=True)}


def even(frame: np.ndarray) -> np.ndarray:
    """``frame`` with an odd height or width padded by repeating its last row or column."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, prov: Provenance,
                mark_frame: Callable[[np.ndarray], np.ndarray] | None = None, progress: bool = True,
                total: int | None = None) -> int:
    """Encode ``frames`` (RGB uint8 (H, W, 3), one size) as H.264 at ``fps`` frames per second into
    the mp4 ``path`` with :func:`container_metadata`, atomically; each frame passes through
    ``mark_frame`` first. ``progress``: a tqdm bar (of ``total`` frames when known). Returns the
    number of frames written; no frame, or frames of two sizes, is a :class:`VideoError`."""
    av = av_module()
    path = check_video_path(path, "video")
    if not fps > 0:
        raise VideoError(f"{path}: the frame rate must be > 0, not {fps}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    count = 0
    try:
        with av.open(tmp, "w", format="mp4", options={"movflags": "use_metadata_tags+faststart"}) as out, \
                tqdm(total=total, desc=path.name, unit="frame", disable=not progress) as bar:
            out.metadata.update(container_metadata(prov))
            stream = None
            for frame in frames:
                frame = np.ascontiguousarray(mark_frame(frame) if mark_frame is not None else frame,
                                             dtype=np.uint8)
                if frame.ndim != 3 or frame.shape[2] != 3:
                    raise VideoError(f"{path}: frames must be RGB (H, W, 3), got shape {frame.shape}")
                frame = even(frame)
                if stream is None:
                    stream = _h264_stream(out, frame.shape, fps)
                elif frame.shape[:2] != (stream.height, stream.width):
                    raise VideoError(f"{path}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, the first "
                                     f"{stream.width}x{stream.height}; all frames must have one size")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                count += 1
                bar.update(1)
            if stream is None:
                raise VideoError(f"{path}: no frames to write")
            out.mux(stream.encode(None))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an open() would make it, not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return count


def _h264_stream(out, shape: tuple[int, ...], fps: float):
    from fractions import Fraction

    stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.height, stream.width = shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(CRF), "preset": "medium"}
    return stream


def _opened(path: Path):
    av = av_module()
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        reason = " ".join(str(e).split())
        raise VideoError(f"{path}: not a readable video ({reason}); is it complete?") from None


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[np.ndarray]:
    """Every ``every``-th frame (0, every, 2·every, …) of the video ``path`` as RGB uint8 (H, W, 3).
    A missing, unreadable or truncated file is a :class:`VideoError`."""
    if every < 1:
        raise ValueError("every must be >= 1")
    av = av_module()
    path = Path(path)
    with _opened(path) as video:
        if not video.streams.video:
            raise VideoError(f"{path}: holds no video stream; is the file complete?")
        declared, i = video.streams.video[0].frames, -1
        try:
            for i, frame in enumerate(video.decode(video=0)):
                if i % every == 0:
                    yield frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: the video breaks off after frame {i + 1} "
                             f"({' '.join(str(e).split())}); the file is truncated or damaged") from None
        if i + 1 < declared:
            raise VideoError(f"{path}: holds {i + 1} of its {declared} frames; the file is truncated")


def video_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The container metadata of the video ``path`` (:func:`container_metadata`'s keys when ssgan
    wrote it), or a :class:`VideoError`."""
    with _opened(Path(path)) as video:
        return dict(video.metadata)


def video_provenance(path: str | os.PathLike) -> Provenance | None:
    """The :class:`Provenance` record in the video's metadata, None when it has none."""
    text = video_metadata(path).get("ssgan_provenance")
    try:
        return None if text is None else Provenance.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return None
