"""Training-loader throughput: can the data pipeline keep a fast GPU fed?

Usage (from the repository root; runs on any machine, CPU only)::

    python -m bench.data [--json OUT.json] [--sizes 256,512] [--n 24] [--batches 12] [--flops-from OLD.json]

Per training resolution (256, 512) and source, the images per second that ONE loader process
delivers through the training loader (:func:`ssgan.data.loader.make_step_loader` with
``workers=0``: decode, resize, random flip, collate into uint8 batches — exactly what each
worker process does), measured on this machine per second of the process's CPU time (a worker
with a core of its own; ``images_per_s_wall`` is per second of wall time, lower on a shared
machine):

* ``png``: images and labels as PNG files at the training size;
* ``jpeg``: images as JPEG (quality 95) at the training size, labels PNG;
* ``cache``: ``--cache`` (:class:`ssgan.data.CachedDataset`: decoded once into memory; the rate
  is then slicing, flipping and collating).

The items are :class:`ssgan.data.synthetic.SyntheticFaces` (13 classes) written as files. The report also
states the bytes one item takes through pinned memory (uint8 image + label) against the float32
image + one-hot mask the loader shipped before.

Demand side: what the fast training step would consume on an H100. No GPU benchmark of the
training step exists yet, so it is a **projection**: the FLOPs of one amortised training
iteration per image (D + G + R1/16 + PL/4, counted by ``bench.train``'s ``FlopCount`` on the
reference path, with fake tensors: shapes only, nothing computed), at 40 % of the H100 SXM's
dense bf16 peak (989 TFLOP/s): images/s = 0.4 · 989e12 / FLOPs per image. Target: 8 workers
deliver at least 3× that.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from bench.kernels import PEAK_TFLOPS, write_json
from bench.timing import environment
from ssgan.data import CachedDataset, FolderDataset
from ssgan.data.loader import make_step_loader
from ssgan.data.synthetic import SyntheticFaces
from ssgan.model.config import preset

SOURCES = ("png", "jpeg", "cache")
PRESET_FOR = {256: "celeba-256", 512: "celeba-512"}
H100_BF16_TFLOPS = next(p["bf16"] for key, _, p in PEAK_TFLOPS if key == "H100")
UTILISATION = 0.40
WORKERS = 8
TARGET_MARGIN = 3.0


def write_folder(root: Path, n: int, size: int, jpeg: bool, seg_dim: int = 13) -> Path:
    """``n`` SyntheticFaces items at ``size`` px as root/images (PNG or JPEG) and root/labels."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    ds = SyntheticFaces(size, n, seed=0, seg_dim=seg_dim)
    for i in range(n):
        image, label = ds.render(i)
        if jpeg:
            Image.fromarray(image).save(root / "images" / f"{i}.jpg", quality=95)
        else:
            Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(label).save(root / "labels" / f"{i}.png")
    return root


def loader_rate(dataset, batch: int, batches: int) -> dict[str, float]:
    """Images/s of one process running the training loader (random flips on), after one batch:
    per second of wall time (``wall``) and per second of this process's CPU time (``cpu``: what a
    worker with a core to itself delivers; on a shared machine the wall rate is lower)."""
    it = iter(make_step_loader(dataset, batch, seed=0, hflip=True, workers=0))
    next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    n = batches * batch
    return {"cpu": n / (time.process_time() - c0), "wall": n / (time.perf_counter() - t0)}


def flops_per_image(resolution: int, batch: int = 4) -> dict[str, float]:
    """FLOPs of each step kind and of the amortised iteration, per image, for the preset of
    ``resolution``: bench.train's ``StepRunner.count_flops`` under ``FakeTensorMode`` (the same
    per-op formulas; shapes only, so it takes seconds on a CPU). Style mixing is off for the count
    (its decision reads a value; the extra mapping pass is < 0.1 % of the FLOPs)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.train import StepRunner

    runner = StepRunner(preset(PRESET_FOR[resolution]), batch, "cpu", "reference", "fp32", False)
    runner.tc = dataclasses.replace(runner.tc, mixing=0.0)
    with FakeTensorMode(allow_non_fake_inputs=True):
        flops = runner.count_flops()
    return {k: v / batch for k, v in flops.items()}


def item_bytes(size: int, seg_dim: int = 13) -> dict[str, int]:
    """Bytes per item through pinned memory: now (uint8 image + uint8 label) and before (float32
    image + uint8 label; before that also the float32 one-hot mask)."""
    return {"uint8": 3 * size * size + size * size, "float32_image": 12 * size * size + size * size,
            "float32_image_and_mask": 12 * size * size + 4 * seg_dim * size * size + size * size}


def measure(sizes: Sequence[int], n: int, batch: int, batches: int, log=print,
            known_flops: dict[int, dict[str, float]] | None = None) -> list[dict]:
    """One record per resolution; ``known_flops``: FLOPs per image by resolution from an earlier
    report (they depend on the model only), else counted."""
    records = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            rates, walls = {}, {}
            for source in SOURCES:
                folder = Path(tmp) / ("jpeg" if source == "jpeg" else "png")
                if not folder.exists():
                    log(f"{size} px: writing {n} {folder.name.upper()} items")
                    write_folder(folder, n, size, jpeg=source == "jpeg")
                ds = FolderDataset(folder / "images", folder / "labels", size, 13)
                if source == "cache":
                    ds = CachedDataset(ds)
                rate = loader_rate(ds, batch, batches)
                rates[source], walls[source] = rate["cpu"], rate["wall"]
                log(f"{size} px {source}: {rate['cpu']:.1f} images/s per worker ({rate['wall']:.1f} wall)")
        flops = (known_flops or {}).get(size) or flops_per_image(size)
        demand = UTILISATION * H100_BF16_TFLOPS * 1e12 / flops["iteration"]
        log(f"{size} px: {flops['iteration'] / 1e9:.1f} GFLOP per image and iteration -> projected "
            f"H100 demand {demand:.0f} images/s")
        records.append({
            "resolution": size, "images_per_s_per_worker": rates, "images_per_s_wall": walls,
            f"images_per_s_{WORKERS}_workers": {k: v * WORKERS for k, v in rates.items()},
            "bytes_per_item": item_bytes(size),
            "gflop_per_image": {k: v / 1e9 for k, v in flops.items()},
            "projected_h100_images_per_s": demand,
            "meets_target": {k: v * WORKERS >= TARGET_MARGIN * demand for k, v in rates.items()},
        })
    return records


def format_table(records: list[dict]) -> str:
    lines = [f"| px | source | img/s per worker (CPU time) | (wall, shared CPU) | img/s x{WORKERS} | "
             f"projected H100 demand img/s | x{WORKERS} / demand |", "|---|---|---|---|---|---|---|"]
    for r in records:
        for source, rate in r["images_per_s_per_worker"].items():
            d, wall = r["projected_h100_images_per_s"], r["images_per_s_wall"][source]
            lines.append(f"| {r['resolution']} | {source} | {rate:.1f} | {wall:.1f} | {rate * WORKERS:.0f} | "
                         f"{d:.0f} (projection) | {rate * WORKERS / d:.1f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="output path (default bench/results/data-<host>-<date>.json)")
    p.add_argument("--sizes", default="256,512", help="training resolutions (256 and/or 512)")
    p.add_argument("--n", type=int, default=24, help="files written per resolution and format")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=12, help="batches timed per measurement")
    p.add_argument("--flops-from", default=None, metavar="JSON",
                   help="reuse the FLOPs per image of an earlier bench.data report (same model)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in PRESET_FOR]
    if bad or args.n < args.batch:
        print(f"error: --sizes takes {', '.join(map(str, PRESET_FOR))} and --n must be >= --batch",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # one loader worker = one core
    load_before = os.getloadavg()[0]
    known = None
    if args.flops_from:
        old = json.loads(Path(args.flops_from).read_text())["records"]
        known = {r["resolution"]: {k: v * 1e9 for k, v in r["gflop_per_image"].items()} for r in old}
    records = measure(sizes, args.n, args.batch, args.batches, log=lambda m: print(m, file=sys.stderr),
                      known_flops=known)
    env = environment()
    env["cpu"] = _cpu_name()
    env["load_average_1min"] = [load_before, os.getloadavg()[0]]  # other work sharing the CPU
    report = {
        "benchmark": "data", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": env, "records": records,
        "notes": {
            "rate": ("one process running the training loader (workers=0): decode, resize, flip, "
                     "collate; images per second of its CPU time (a worker with its own core); "
                     "images_per_s_wall: per second of wall time on this shared machine"),
            "demand": (f"PROJECTION, not measured: {UTILISATION:.0%} of the H100 SXM dense bf16 peak "
                       f"({H100_BF16_TFLOPS:.0f} TFLOP/s) / FLOPs per image of one amortised iteration "
                       f"(D + G + R1/16 + PL/4, FlopCount formulas on fake tensors)"),
            "target": f"{WORKERS} workers >= {TARGET_MARGIN:.0f}x the demand",
            "data": "SyntheticFaces (13 classes) files at the training size; JPEG quality 95",
        },
    }
    path = args.json or Path("bench/results") / f"data-{_dt.date.today().isoformat()}.json"
    print(format_table(records))
    print(f"wrote {write_json(report, path)}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
