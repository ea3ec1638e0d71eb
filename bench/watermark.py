"""Watermark robustness benchmark: how often ssgan's invisible watermark (:mod:`ssgan.provenance.watermark`)
is read back after common re-encodings, what it costs in quality, and how often it is "found" in
pictures that do not carry it.

Usage (CPU, from the repository root)::

    python -m bench.watermark [--out bench/results/watermark-cpu.json] [--count 200] [--negatives 1000]
    python -m bench.watermark --quick          # a handful of images: the test's plumbing check
    PYTHONPATH=/path/to/site python -m bench.watermark --compare   # also invisible-watermark's methods

Images (all 256 × 256 RGB, each marked with a random 16-bit key id):

* ``faces``: the built-in procedural faces (:class:`ssgan.data.synthetic.SyntheticFaces`) drawn
  natively at 256 px, seed 1, items 0 … count−1;
* ``photo``: random 256-px crops (and mirror images) of the one photograph a dependency ships,
  matplotlib's ``grace_hopper.jpg`` (512 × 600): overlapping views of one photo, so textured
  content but not independent pictures.

Attacks: JPEG quality 90 / 75 / 50 (PIL, 4:2:0 chroma), resize to half and back (bicubic), a
10 % crop (90 % of each side kept, random offset, not rescaled), brightness ×1.1 and ×0.9
(clipped), Gaussian noise σ = 2/255. Per attack: the *detection rate* (the payload's CRC and tag
check out and the key id is the one embedded) and the *bit accuracy* of the 32 decoded payload
bits. Quality: PSNR and MS-SSIM (:func:`ssgan.edit.perceptual.ms_ssim`) of the marked image vs the
unmarked one. False positives: payloads that check out in ``--negatives`` unmarked pictures (the
faces with seed 2, unmarked outputs of a random tiny-preset generator upsampled bicubically to
256 px, photo crops of other offsets). ``--compare`` runs the same on invisible-watermark's
``dwtDct`` and ``dwtDctSvd`` with a 32-bit payload (TAG ‖ key; detected = all 32 bits right),
when that package (and OpenCV, PyWavelets) can be imported.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssgan.data.synthetic import SyntheticFaces
from ssgan.edit.perceptual import ms_ssim
from ssgan.provenance import watermark as W

SIZE = 256
TARGET_RATE = 0.95  # issue 24: payload exact on >= 95 % after each of the TARGETED attacks
TARGETED = ("jpeg75", "half", "crop10", "bright+10", "bright-10", "noise2")
TARGET_PSNR = 38.0


def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _half(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    small = Image.fromarray(a).resize((w // 2, h // 2), Image.BICUBIC)
    return np.asarray(small.resize((w, h), Image.BICUBIC))


def attacks(rng: np.random.Generator) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Name → attack (uint8 RGB in, uint8 RGB out); ``rng`` draws crop offsets and noise."""

    def crop(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        ch, cw = int(h * 0.9), int(w * 0.9)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        return a[y:y + ch, x:x + cw]

    def scale(f: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda a: np.clip(np.rint(a * f), 0, 255).astype(np.uint8)

    def noise(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a + rng.normal(0, 2.0, a.shape)), 0, 255).astype(np.uint8)

    return {"none": lambda a: a, "jpeg90": lambda a: _jpeg(a, 90), "jpeg75": lambda a: _jpeg(a, 75),
            "jpeg50": lambda a: _jpeg(a, 50), "half": _half, "crop10": crop, "bright+10": scale(1.1),
            "bright-10": scale(0.9), "noise2": noise}


def photo() -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def photo_crops(n: int, seed: int) -> list[np.ndarray]:
    """``n`` random 256-px crops of the photo, every other one mirrored."""
    big, rng = photo(), np.random.default_rng(seed)
    out = []
    for i in range(n):
        y, x = rng.integers(0, big.shape[0] - SIZE + 1), rng.integers(0, big.shape[1] - SIZE + 1)
        crop = big[y:y + SIZE, x:x + SIZE]
        out.append(np.ascontiguousarray(crop[:, ::-1] if i % 2 else crop))
    return out


def generator_outputs(n: int) -> list[np.ndarray]:
    """``n`` unmarked samples of a random tiny-preset generator, upsampled to 256 px."""
    from ssgan.edit import editing as E
    from ssgan.model.config import preset
    from ssgan.model.generator import SemanticGenerator

    torch.manual_seed(0)
    G = SemanticGenerator(preset("tiny")).eval()
    rgb = np.concatenate([s.rgb[None] for s in E.generate(G, n, 0, 1.0, batch=16)])
    return [np.asarray(Image.fromarray(a).resize((SIZE, SIZE), Image.BICUBIC)) for a in rgb]


class Method:
    """A watermarking method: ``embed(rgb, key) -> rgb``, ``read(rgb) -> (ok, key or None, bits)``."""

    def __init__(self, name: str, embed: Callable[[np.ndarray, int], np.ndarray],
                 read: Callable[[np.ndarray], tuple[bool, int | None, np.ndarray]]):
        self.name, self.embed, self.read = name, embed, read


def ssgan_method() -> Method:
    def read(a: np.ndarray) -> tuple[bool, int | None, np.ndarray]:
        d = W.extract(a)
        return d.payload_ok, d.key_id, np.array(d.bits, np.int8)

    return Method("ssgan", W.embed, read)


def invisible_watermark_methods() -> list[Method]:
    """invisible-watermark's dwtDct and dwtDctSvd carrying TAG ‖ key (32 bits), its defaults."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    def make(kind: str) -> Method:
        def embed(a: np.ndarray, key: int) -> np.ndarray:
            enc = WatermarkEncoder()
            enc.set_watermark("bits", [int(b) for b in W.payload_bits(key)])
            return np.ascontiguousarray(enc.encode(a[..., ::-1].copy(), kind)[..., ::-1])  # it works in BGR

        def read(a: np.ndarray) -> tuple[bool, int | None, np.ndarray]:
            try:
                bits = np.array(WatermarkDecoder("bits", 32).decode(a[..., ::-1].copy(), kind), np.int8)
            except RuntimeError:  # "image too small, should be larger than 256x256" (a crop)
                return False, None, np.zeros(32, np.int8)
            tag, key = int("".join(map(str, bits[:16])), 2), int("".join(map(str, bits[16:])), 2)
            return tag == W.TAG, key if tag == W.TAG else None, bits

        return Method(f"invisible-watermark {kind}", embed, read)

    return [make("dwtDct"), make("dwtDctSvd")]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def measure(method: Method, sets: dict[str, list[np.ndarray]], negatives: list[np.ndarray],
            seed: int) -> dict:
    """Per image set: detection rate and bit accuracy per attack, PSNR and MS-SSIM; then the false
    positives over ``negatives``."""
    rng = np.random.default_rng(seed)
    out: dict = {"method": method.name, "sets": {}}
    for name, images in sets.items():
        keys = rng.integers(0, 1 << W.KEY_BITS, len(images))
        marked = [method.embed(a, int(k)) for a, k in zip(images, keys)]
        hits: dict[str, list[bool]] = {}
        bits: dict[str, list[float]] = {}
        for attack, f in attacks(rng).items():
            for m, k in zip(marked, keys):
                ok, key, got = method.read(f(m))
                hits.setdefault(attack, []).append(bool(ok and key == int(k)))
                truth = W.payload_bits(int(k))
                bits.setdefault(attack, []).append(float(np.mean(got == truth)) if len(got) == 32 else 0.0)
        ps = [psnr(m, a) for m, a in zip(marked, images)]
        ss = torch.cat([ms_ssim(_tensor(marked[i:i + 32]), _tensor(images[i:i + 32]))
                        for i in range(0, len(images), 32)])
        out["sets"][name] = {
            "images": len(images),
            "detection_rate": {a: float(np.mean(v)) for a, v in hits.items()},
            "bit_accuracy": {a: float(np.mean(v)) for a, v in bits.items()},
            "psnr_db": {"mean": float(np.mean(ps)), "min": float(np.min(ps))},
            "ms_ssim": {"mean": float(ss.mean()), "min": float(ss.min())},
        }
    fp = sum(method.read(a)[0] for a in negatives)
    out["false_positives"] = {"unmarked_images": len(negatives), "found": int(fp)}
    return out


def verdict(result: dict) -> list[str]:
    """The issue's targets this result misses (and by how much); [] when all are met."""
    missed = []
    for name, s in result["sets"].items():
        for a in TARGETED:
            rate = s["detection_rate"][a]
            if rate < TARGET_RATE:
                missed.append(f"{name} {a}: {rate:.1%} < {TARGET_RATE:.0%} "
                              f"(short by {TARGET_RATE - rate:.1%})")
        if s["psnr_db"]["min"] < TARGET_PSNR:
            missed.append(f"{name} PSNR min {s['psnr_db']['min']:.2f} dB < {TARGET_PSNR} dB")
    if result["false_positives"]["found"]:
        missed.append(f"{result['false_positives']['found']} false positives")
    return missed


def table(results: Sequence[dict]) -> str:
    """A Markdown table: one row per method and image set."""
    names = list(attacks(np.random.default_rng(0)))
    head = ("| method | images | " + " | ".join(names) + " | PSNR dB (min) | MS-SSIM | false pos. |\n|"
            + "---|" * (len(names) + 5))
    rows = []
    for r in results:
        fp = r["false_positives"]
        for name, s in r["sets"].items():
            cells = [f"{s['detection_rate'][a]:.1%} ({s['bit_accuracy'][a]:.3f})" for a in names]
            rows.append(f"| {r['method']} | {name} ({s['images']}) | " + " | ".join(cells)
                        + f" | {s['psnr_db']['mean']:.2f} ({s['psnr_db']['min']:.2f}) | "
                        f"{s['ms_ssim']['mean']:.4f} | {fp['found']}/{fp['unmarked_images']} |")
    return head + "\n" + "\n".join(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.watermark", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=200, help="marked images per set")
    p.add_argument("--negatives", type=int, default=1000, help="unmarked images for false positives")
    p.add_argument("--quick", action="store_true", help="4 images per set, 24 negatives (a plumbing check)")
    p.add_argument("--compare", action="store_true", help="also invisible-watermark's dwtDct, dwtDctSvd")
    p.add_argument("--out", default="bench/results/watermark-cpu.json", help="the JSON written")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    count, negatives = (4, 24) if args.quick else (args.count, args.negatives)
    t0 = time.perf_counter()
    faces = SyntheticFaces(SIZE, count, seed=1)
    sets = {"faces": [faces.render(i)[0] for i in range(count)], "photo": photo_crops(count, seed=1)}
    n_gen = min(100, negatives // 10)
    n_photo = min(200, negatives // 5)
    others = SyntheticFaces(SIZE, negatives - n_gen - n_photo, seed=2)
    neg = ([others.render(i)[0] for i in range(len(others))] + generator_outputs(n_gen)
           + photo_crops(n_photo, seed=2))
    methods = [ssgan_method()] + (invisible_watermark_methods() if args.compare else [])
    results = [measure(m, sets, neg, seed=0) for m in methods]
    report = {"benchmark": "watermark", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "size": SIZE, "quick": args.quick, "seconds": round(time.perf_counter() - t0, 1),
              "negatives": {"faces_seed2": len(others), "tiny_generator_upsampled": n_gen,
                            "photo_crops_seed2": n_photo},
              "results": results, "missed_targets": {r["method"]: verdict(r) for r in results}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    for m, missed in report["missed_targets"].items():
        print(f"{m}: " + ("every target met" if not missed else "missed: " + "; ".join(missed)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
