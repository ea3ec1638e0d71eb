"""Inversion benchmark: images per second and seconds per image of ``ssgan invert``'s latent search.

Usage (on a CUDA machine, from the repository root)::

    python -m bench.invert [--json OUT.json] [--resolutions 256,512 --batch 8 --steps 400]
    python -m bench.invert --device cpu --preset tiny --resolutions 32    # CPU figure of the tiny preset
    python -m bench.invert --dry-run --json OUT.json     # the GPU session's dry run (CPU, toy sizes)

Per resolution (celeba-256 / celeba-512 configurations, random weights: the cost does not depend
on them), ``--batch`` targets rendered by the model itself are inverted for ``--steps`` steps
(:func:`ssgan.edit.inversion.invert_latents`, default loss: MS-SSIM perceptual + MSE + mean-latent
term; LPIPS-VGG would add a VGG16 forward/backward at 256 px per step). The timed window is the
whole search, after a warm-up search of ``--warmup`` steps (Triton autotuning, cuDNN algorithm
search), device synchronised at both ends. Two paths:

* ``reference``: ``SSGAN_BACKEND=reference``, fp32 (no TF32), eager;
* ``ssgan``: the Triton ops, the generator under bf16 autocast (losses in fp32), TF32 allowed.

On CPU only the reference path runs (the Triton ops need a GPU); without CUDA and without
``--device cpu`` it exits with status 2 and measures nothing. Target (issue 11): a batch of 8 at
512 px, 400 steps, in under 60 s on one H100. The JSON (``--json``) is rewritten after each
measured path (``complete`` false until the last); its ``budget`` records the resolutions, batch,
steps and warm-up used. ``--dry-run`` (the GPU session's CPU dry run): the tiny preset at 32 px
on CPU, batch 2, 2 steps after a 1-step warm-up: it checks the plumbing, not the speed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import sys
import time
from collections.abc import Callable, Sequence

import torch

from bench.kernels import default_path, slug
from bench.session import fmt, write_json
from bench.timing import environment
from ssgan.edit import editing as E
from ssgan.edit import inversion as I
from ssgan.kernels import use_backend
from ssgan.model.config import preset
from ssgan.model.generator import SemanticGenerator
from ssgan.train import steps as T

NO_CUDA_MESSAGE = "no CUDA device: the inversion benchmark only runs on a GPU; nothing was measured"
PRESET_FOR = {256: "celeba-256", 512: "celeba-512"}
# measured in this order: a run stopped at the GPU session's cap keeps the fast path's figure
PATHS = {"ssgan": {"backend": "triton", "precision": "bf16"},
         "reference": {"backend": "reference", "precision": "fp32"}}
TARGET_S = 60.0  # batch 8, 512 px, 400 steps on one H100


def time_search(G: SemanticGenerator, images: torch.Tensor, steps: int, warmup: int, backend: str,
                precision: str, sync: Callable[[], None],
                clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds for one latent search of ``steps`` steps on ``images``, after a ``warmup``-step search."""
    T.configure_precision("fp32" if precision == "fp32" else "tf32")
    mean = E.mean_w(G, 0, 10000)
    with use_backend(backend):
        if warmup:
            I.invert_latents(G, images, cfg=I.InversionConfig(steps=warmup, precision=precision), mean=mean)
        sync()
        t0 = clock()
        I.invert_latents(G, images, cfg=I.InversionConfig(steps=steps, precision=precision), mean=mean)
        sync()
    return clock() - t0


def make_record(resolution: int, batch: int, steps: int, cfg_name: str, ref: dict, fast: dict) -> dict:
    """One entry from the two measurements ({s, peak_mib, error})."""

    def per(m: dict, f: Callable[[float], float]) -> float | None:
        return f(m["s"]) if m.get("s") else None

    rec = {
        "name": f"invert_{resolution}",
        "config": {"preset": cfg_name, "resolution": resolution, "batch": batch, "steps": steps},
        "reference_s": ref.get("s"), "ssgan_s": fast.get("s"),
        "speedup": ref["s"] / fast["s"] if ref.get("s") and fast.get("s") else None,
        "reference_s_per_image": per(ref, lambda s: s / batch),
        "ssgan_s_per_image": per(fast, lambda s: s / batch),
        "reference_images_per_s": per(ref, lambda s: batch / s),
        "ssgan_images_per_s": per(fast, lambda s: batch / s),
        "reference_peak_mib": ref.get("peak_mib"), "ssgan_peak_mib": fast.get("peak_mib"),
    }
    if resolution == 512 and batch == 8 and steps == 400 and fast.get("s"):
        rec["target_s"] = TARGET_S
        rec["target_met"] = fast["s"] < TARGET_S
    errors = {k: v["error"] for k, v in (("reference", ref), ("ssgan", fast)) if v.get("error")}
    if errors:
        rec["errors"] = errors
    return rec


def format_table(report: dict) -> str:
    lines = [f"device {report['device']}  commit {report['commit']}",
             f"{'benchmark':12s} {'batch':>5s} {'steps':>5s} {'ref s':>8s} {'ssgan s':>8s} {'speedup':>8s} "
             f"{'ref s/img':>9s} {'s/img':>7s} {'img/s':>7s}"]
    for r in report["benchmarks"]:
        c = r["config"]
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"{r['name']:12s} {c['batch']:5d} {c['steps']:5d} {fmt(r['reference_s'], '8.1f')} "
                     f"{fmt(r['ssgan_s'], '8.1f')} {speedup:>8s} "
                     f"{fmt(r['reference_s_per_image'], '9.2f')} {fmt(r['ssgan_s_per_image'], '7.2f')} "
                     f"{fmt(r['ssgan_images_per_s'] or r['reference_images_per_s'], '7.3f')}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.invert", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None,
                   help="output path (default bench/results/invert-<device>-<date>.json)")
    p.add_argument("--resolutions", default="256,512")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda", help="cuda, or cpu (reference path only)")
    p.add_argument("--preset", default=None, help="a preset instead of celeba-<res> (e.g. tiny on CPU)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, tiny preset at 32 px, batch 2, 2 steps: the GPU session's dry run (plumbing)")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.preset, args.resolutions = "cpu", "tiny", "32"
        args.batch, args.steps, args.warmup = 2, 2, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    env = environment()
    report = {**env, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "what": "latent search of ssgan invert (no generator tuning): wall time of the whole search, "
                      "device synchronised at both ends, after a warm-up search",
              "loss": "MS-SSIM perceptual (pooled to 256 px) + 0.1 MSE + 1.0 mean-latent term",
              "data": "targets rendered by the (random-weight) model itself, resident on the device",
              "reference": "reference backend, fp32 (no TF32), eager",
              "ssgan": "triton backend, generator under bf16 autocast, TF32 allowed",
              "budget": {"resolutions": args.resolutions, "batch": args.batch, "steps": args.steps,
                         "warmup": args.warmup},
              "dry_run": args.dry_run, "benchmarks": [], "complete": False}
    if not cuda:
        report["note"] = "CPU run: reference path only; no GPU figures exist until this runs on a GPU"
    path = None
    if args.json or cuda:
        path = args.json or default_path(env["device"]).with_name(
            f"invert-{slug(env['device'])}-{_dt.date.today().isoformat()}.json")

    def save(benchmarks: list[dict], complete: bool) -> None:
        report["benchmarks"], report["complete"] = benchmarks, complete
        if path is not None:
            write_json(report, path)

    records = []
    for res in [int(r) for r in args.resolutions.split(",") if r.strip()]:
        name = args.preset or PRESET_FOR.get(res, "celeba-256")
        cfg = preset(name).replace(size=res) if not args.preset else preset(name)
        torch.manual_seed(0)
        G = SemanticGenerator(cfg).to(dev).eval()
        images = E.render(G, E.sample_latents(G, args.batch, seed=1, truncation=0.7)).rgb.clamp(-1, 1)
        measured: dict[str, dict] = {}
        for path_name, opts in PATHS.items():
            if not cuda and opts["backend"] == "triton":
                measured[path_name] = {"error": "not run: the Triton ops need a GPU"}
                continue
            log(f"[{cfg.size}px] {path_name}: {args.steps} steps, batch {args.batch}")
            try:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                s = time_search(G, images, args.steps, args.warmup, opts["backend"], opts["precision"], sync)
                peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
                measured[path_name] = {"s": s, "peak_mib": peak}
                log(f"[{cfg.size}px] {path_name}: {s:.1f} s ({s / args.batch:.2f} s per image)")
            except torch.cuda.OutOfMemoryError as e:
                measured[path_name] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
            finally:
                if cuda:
                    torch.cuda.empty_cache()
            partial = make_record(cfg.size, args.batch, args.steps, name, measured.get("reference", {}),
                                  measured.get("ssgan", {}))
            save(records + [partial], False)  # a search stopped later keeps this one
        records.append(partial)
    save(records, True)
    print(format_table(report))
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
