"""The loaders under hostile input (docs/reliability.md, "Loaders under a fuzzer"): every
committed seed and every input a fuzzer once found (``bench/fuzz/findings/``) loads or raises the
project's own error in one line; the cases a fuzzer found or that the caps exist for, one by one;
and (slow) a short coverage-guided atheris run per harness (``bench.fuzz.run``)."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.fuzz.run import CORPUS
from bench.fuzz.targets import CFG, TARGETS, generator, npy_bytes, run_one
from ssgan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ssgan.classes import ClassesError, read_classes
from ssgan.data.base import MAX_PIXELS, DatasetError
from ssgan.edit import photos
from ssgan.edit.encoder import EncoderError

FINDINGS = Path(__file__).resolve().parents[1] / "bench" / "fuzz" / "findings"
SAMPLES = sorted((h.name, f) for root in (CORPUS, FINDINGS) if root.is_dir()
                 for h in root.iterdir() for f in sorted(h.iterdir()))


@pytest.mark.parametrize("harness,path", SAMPLES, ids=[f"{h}/{p.name}" for h, p in SAMPLES])
def test_seeds_and_findings_load_or_raise_one_line(harness, path):
    run_one(harness, path.read_bytes())


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_a_header_claiming_1e12_elements_is_refused_before_allocating(tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(safetensors_bytes({"extra.x": {"dtype": "F32", "shape": [10**6, 10**6],
                                                    "data_offsets": [0, 8]}}, bytes(8)))
    with pytest.raises(CheckpointError, match=r"does not fill its 8 bytes"):
        load_checkpoint(path)
    path.write_bytes(safetensors_bytes({"extra.x": {"shape": [2], "data_offsets": [0, 8]}}, bytes(8)))
    with pytest.raises(CheckpointError, match="no known dtype"):  # found by the fuzzer: a KeyError
        load_checkpoint(path)


def test_a_config_wider_than_the_file_is_refused_before_building(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", CFG, g_ema=generator())
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header["__metadata__"]
    del meta["sha256"]
    meta["config"] = json.dumps({**CFG.to_dict(), "style_dim": 10**9})  # a 10^18-element mapping
    path.write_bytes(safetensors_bytes(header, raw[8 + n:]))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="style_dim=1000000000 is wider than any of its tensors"):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5
    meta["config"] = json.dumps({**CFG.to_dict(), "size": 4096, "coarse_size": 8})
    path.write_bytes(safetensors_bytes(header, raw[8 + n:]))
    with pytest.raises(CheckpointError, match="power of two in 8..1024"):  # was a KeyError
        load_checkpoint(path)
    meta["config"] = json.dumps(CFG.to_dict())
    meta["meta"] = json.dumps({"classes": {"names": ["a", "b"], "colors": {"x": 5}}})
    path.write_bytes(safetensors_bytes(header, raw[8 + n:]))
    with pytest.raises(CheckpointError, match="unusable class names"):  # was a ValueError
        load_checkpoint(path)
    meta["meta"] = "[1]"
    path.write_bytes(safetensors_bytes(header, raw[8 + n:]))
    with pytest.raises(CheckpointError, match="not an object"):  # was an AttributeError
        load_checkpoint(path)


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width × height grey pixels, with a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 1  # over the cap, under PIL's own refusal (twice the cap)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(side, side))
    with pytest.warns(Image.DecompressionBombWarning), \
            pytest.raises(DatasetError, match="limit of 89,478,485"):
        photos.read_photo(path, 32)
    with pytest.raises(DatasetError, match="over the limit"):
        photos.read_label(path, path, (side, side), 32, 5)
    run_one("label", bomb_png(side, side))
    run_one("photo", bomb_png(side, side))


def test_classes_json_is_linear_in_its_size(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classes": [f"c{i}" for i in range(200_000)]}))
    t0 = time.perf_counter()
    with pytest.raises(ClassesError, match="200000 classes"):
        read_classes(path)
    assert time.perf_counter() - t0 < 2
    path.write_text(json.dumps({"classes": ["skin", "sk\n", "eyes"], "transparent": ["eye"]}))
    with pytest.raises(ClassesError, match="without control characters"):  # found: a two-line error
        read_classes(path)
    path.write_text("[" * 100_000)
    with pytest.raises(ClassesError, match="cannot read"):  # RecursionError before
        read_classes(path)


def test_encoder_configuration_is_checked_before_building(tmp_path):
    seed = (CORPUS / "encoder" / "encoder.safetensors").read_bytes()
    n = struct.unpack("<Q", seed[:8])[0]
    header = json.loads(seed[8:8 + n])
    meta = json.loads(header["__metadata__"]["meta"])
    del header["__metadata__"]["sha256"]
    for value, why in ((10**9, "hidden=1000000000 is wider"), ("wide", "unusable configuration")):
        header["__metadata__"]["meta"] = json.dumps({**meta, "encoder": {**meta["encoder"], "hidden": value}})
        with pytest.raises(EncoderError, match=why):
            run_one_strict("encoder", safetensors_bytes(header, seed[8 + n:]))


def run_one_strict(name: str, data: bytes) -> None:
    """The target's loader itself (its error propagates), on ``data`` in a temporary file."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"input{TARGETS[name].suffix}"
        path.write_bytes(data)
        TARGETS[name].load(path)


def test_an_upload_is_an_image_or_a_latent_or_a_client_error():
    from ssgan.serve.errors import ClientError

    run_one("upload", npy_bytes(np.zeros((CFG.n_latent, CFG.style_dim), np.float32)))
    with pytest.raises(ClientError, match="not a .npy array"):
        run_one_strict("upload", bomb_png(20_000, 20_000))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with pytest.raises(ClientError):
        run_one_strict("upload", buf.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("harness", list(TARGETS))
def test_a_short_atheris_run_finds_nothing(harness, tmp_path):
    pytest.importorskip("atheris")
    from bench.fuzz.run import fuzz

    report = fuzz(harness, 12, tmp_path)
    print(report)
    assert report["exit_code"] == 0 and not report["findings"], report["log_tail"]
    assert report["executions"] and report["executions"] > 10
