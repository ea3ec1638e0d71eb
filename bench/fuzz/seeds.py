"""The committed seed corpora of the fuzz harnesses (``bench/fuzz/corpus/<harness>/``), a few
small valid (and a few nearly valid) inputs per kind; deterministic::

    python -m bench.fuzz.seeds        # rewrites bench/fuzz/corpus/
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.fuzz.run import CORPUS
from bench.fuzz.targets import CFG, generator, npy_bytes


def png(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def checkpoint_seeds(tmp: Path) -> dict[str, bytes]:
    from ssgan.checkpoint import save_checkpoint

    G = generator()
    meta = {"classes": {"names": ["skin", "hair"], "colors": {"0": [1, 2, 3]}}}
    save_checkpoint(tmp / "g.safetensors", CFG, g_ema=G, step=3, meta=meta)
    save_checkpoint(tmp / "empty.safetensors", CFG, step=0)
    empty = (tmp / "empty.safetensors").read_bytes()
    n = struct.unpack("<Q", empty[:8])[0]
    header = json.loads(empty[8:8 + n])
    del header["__metadata__"]["sha256"]  # as written before checksums: no digest to match
    return {"g_ema.safetensors": (tmp / "g.safetensors").read_bytes(), "no_tensors.safetensors": empty,
            "no_checksum.safetensors": safetensors_bytes(header),
            "one_tensor.safetensors": safetensors_bytes(
                {"__metadata__": {"format": "ssgan", "format_version": "1", "sections": "",
                                  "config": json.dumps(CFG.to_dict())},
                 "extra.x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))}


def official_seeds(tmp: Path) -> dict[str, bytes]:
    import argparse as ap

    args = ap.Namespace(size=16, latent=8, n_mlp=1, channel_multiplier=1, seg_dim=2, local_layers=2,
                        local_channel=4, base_layers=1, depth_layers=1, coarse_size=8, coarse_channel=4,
                        min_feat_size=4, residual_refine=True, detach_texture=False, transparent_dims=[])
    out = {}
    for name, obj in (("g_ema.pt", {"g_ema": generator().state_dict(), "args": args}),
                      ("args_only.pt", {"g_ema": {}, "args": args})):
        torch.save(obj, tmp / name)
        out[name] = (tmp / name).read_bytes()
    return out


def encoder_seeds(tmp: Path) -> dict[str, bytes]:
    from ssgan.edit.encoder import EncoderConfig, LatentEncoder, save_encoder

    torch.manual_seed(0)
    enc = LatentEncoder(CFG, EncoderConfig(width=2, channel_max=4, hidden=4, max_input=8, mean_samples=1))
    save_encoder(tmp / "enc.safetensors", enc, generator())
    return {"encoder.safetensors": (tmp / "enc.safetensors").read_bytes()}


def image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8))
    jpeg = io.BytesIO()
    rgb.save(jpeg, format="JPEG", quality=80)
    return {"rgb.png": png(rgb), "small.jpg": jpeg.getvalue(),
            "wide.png": png(Image.new("RGB", (24, 12), "red")),
            "rgba.png": png(Image.new("RGBA", (8, 8), (1, 2, 3, 128))),
            "grey.png": png(Image.new("L", (8, 8)))}


def label_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    lab = Image.fromarray(rng.integers(0, CFG.seg_dim, (16, 16), np.uint8))
    pal = lab.convert("P")
    return {"label.png": png(lab), "palette.png": png(pal), "big.png": png(Image.new("L", (32, 32), 1)),
            "too_high.png": png(Image.new("L", (16, 16), 7))}


def latent_seeds() -> dict[str, bytes]:
    w = np.random.default_rng(2).standard_normal((CFG.n_latent, CFG.style_dim)).astype(np.float32)
    return {"compact.npy": npy_bytes(w), "batch.npy": npy_bytes(w[None].astype(np.float16)),
            "ints.npy": npy_bytes(np.arange(6, dtype=np.int32).reshape(2, 3))}


def classes_seeds() -> dict[str, bytes]:
    full = {"classes": ["background", "skin", "eyes"], "transparent": ["eyes", 0],
            "colors": {"skin": [200, 150, 120], "2": [0, 0, 255]}}
    return {"full.json": json.dumps(full).encode(), "names.json": b'{"classes": ["a", "b"]}',
            "bad.json": b'{"classes": [], "x": 1}'}


def make(root: Path) -> dict[str, int]:
    """Write every harness's seeds under ``root``; the number per harness."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        images = image_seeds()
        seeds = {"safetensors": checkpoint_seeds(t), "official": official_seeds(t), "latent": latent_seeds(),
                 "photo": images, "label": label_seeds(), "classes": classes_seeds(),
                 "encoder": encoder_seeds(t),
                 "upload": {**images, "compact.npy": latent_seeds()["compact.npy"]}}
    for name, files in seeds.items():
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for file, data in files.items():
            (folder / file).write_bytes(data)
    return {k: len(v) for k, v in seeds.items()}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(make(CORPUS))


if __name__ == "__main__":
    main()
