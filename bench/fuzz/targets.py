"""What each fuzz harness loads: one :class:`Target` per input kind, calling the project's own
loader on the fuzzer's bytes and naming the one error type it may raise.

The contract (issue 23; docs/reliability.md, "Loaders under a fuzzer"): every input either loads
or raises the target's error type with a one-line message; any other exception, a hang past the
per-input limit, or a process growing past the memory cap is a finding. The loaders keep it, not
the harness: :func:`check` only calls them.

The tiny model of the harnesses (:data:`CFG`, 3.7 k parameters) keeps one input's load in
milliseconds; a file's own configuration may ask for any model, and the loaders refuse one whose
tensors the file does not hold before building it.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssgan.checkpoint import CheckpointError, load_checkpoint
from ssgan.classes import ClassesError, read_classes
from ssgan.cliargs import CLIError, load_npy
from ssgan.data.base import DatasetError
from ssgan.data.folders import FolderDataset
from ssgan.edit import photos
from ssgan.edit.encoder import EncoderError, load_encoder
from ssgan.model.config import SSGANConfig
from ssgan.model.generator import SemanticGenerator
from ssgan.serve.errors import ClientError

CFG = SSGANConfig(size=16, style_dim=8, n_mlp=1, channel_multiplier=1, channel_max=8, seg_dim=2,
                  local_layers=2, local_channel=4, base_layers=1, depth_layers=1, coarse_size=8,
                  coarse_channel=4, min_feat_size=4, transparent_dims=())
MAX_LEN = 64 * 1024  # bytes per input
TIME_LIMIT_S = 10  # per input
RSS_LIMIT_MB = 2048  # the process (torch, PIL and the fuzzer included)


@dataclass(frozen=True)
class Target:
    """``load(path)`` reads the fuzzer's bytes written to a file named ``name``; ``error``: the only
    exception it may raise."""

    name: str
    suffix: str
    load: Callable[[Path], Any]
    error: type[Exception]
    what: str


@cache
def generator() -> SemanticGenerator:
    import torch

    torch.manual_seed(0)
    return SemanticGenerator(CFG).eval()


@cache
def editor() -> tuple[Any, str]:
    """An editor on the tiny generator and one of its sessions (the upload harness)."""
    from ssgan.classes import ClassInfo, default_names
    from ssgan.serve.editor import Editor, Limits
    from ssgan.serve.engine import Engine

    ed = Editor(Engine(generator(), ClassInfo(default_names(CFG.seg_dim))), Limits(max_pixels=4_000_000))
    return ed, ed.new_session()["session"]


def load_ssgan(path: Path) -> None:
    ck = load_checkpoint(path)
    ck.classes  # noqa: B018  (names and colours from the file's meta, as every command reads them)


def load_latent(path: Path) -> None:
    from ssgan.edit.editing import as_latent

    array = load_npy(path, "latent")
    try:
        as_latent(array, generator(), str(path))
    except ValueError as e:
        raise CLIError(str(e)) from None


def load_photo(path: Path) -> None:
    photos.read_photo(path, CFG.size)


def label_image(folder: Path) -> Path:
    image = folder / "face.png"
    if not image.exists():
        Image.new("RGB", (16, 16), (200, 150, 120)).save(image)
    return image


def load_label(path: Path) -> None:
    image = label_image(path.parent)
    photos.read_label(path, image, (16, 16), CFG.size, CFG.seg_dim)
    FolderDataset.from_files([image], [path], CFG.size, CFG.seg_dim)[0]


def load_encoder_file(path: Path) -> None:
    load_encoder(path, generator())


def load_upload(path: Path) -> None:
    from ssgan.serve.editor import decode_upload

    ed, sid = editor()
    data = path.read_bytes()
    try:
        decode_upload(data, "upload.png", CFG.size, ed.limits)
    except ClientError:
        pass
    ed.open_latent(sid, data, "upload.npy")


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("safetensors", ".safetensors", load_ssgan, CheckpointError,
           "ssgan .safetensors: header, metadata JSON, checksum, config, state dicts (load_checkpoint)"),
    Target("official", ".pt", load_ssgan, CheckpointError,
           "official .pt under torch.load(weights_only=True) (load_checkpoint)"),
    Target("latent", ".npy", load_latent, CLIError, "latent .npy, allow_pickle=False (load_npy, as_latent)"),
    Target("photo", ".png", load_photo, DatasetError, "photos for inversion (PIL; read_photo)"),
    Target("label", ".png", load_label, DatasetError,
           "label PNGs (read_label, FolderDataset's loader), next to a fixed 16x16 image"),
    Target("classes", ".json", read_classes, ClassesError, "classes.json (read_classes)"),
    Target("encoder", ".safetensors", load_encoder_file, EncoderError,
           "an encoder file for the tiny generator (load_encoder)"),
    Target("upload", "", load_upload, ClientError,
           "the editor's upload path: the bytes as an image (decode_upload) and as a latent (open_latent)"),
)}


def check(target: Target, data: bytes, folder: Path) -> None:
    """Load ``data`` as ``target`` from a file in ``folder``; the target's error must be one line.
    Any other exception propagates (a finding)."""
    path = folder / f"input{target.suffix}"
    path.write_bytes(data)
    try:
        target.load(path)
    except target.error as e:
        text = str(e)
        if "\n" in text.strip() or not text.strip():
            raise AssertionError(f"{type(e).__name__} is not one line: {text!r}") from e


def run_one(name: str, data: bytes) -> None:
    """:func:`check` in a fresh temporary folder (tests and reproducing a finding)."""
    with tempfile.TemporaryDirectory() as tmp:
        check(TARGETS[name], data, Path(tmp))


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
