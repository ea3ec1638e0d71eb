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

* ``compiled``: the reference path with the search step's forward through ``torch.compile``
  (inductor, ``ssgan invert --compile``); its warm-up time (compiling, or loading inductor's
  on-disk cache) is recorded apart.

On CPU the reference and compiled paths run (the Triton ops need a GPU); without CUDA and without
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
import os
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
from ssgan.model.compiled import use_all_cores, use_inductor_cache
from ssgan.model.config import preset
from ssgan.model.generator import SemanticGenerator
from ssgan.train import steps as T

NO_CUDA_MESSAGE = "no CUDA device: the inversion benchmark only runs on a GPU; nothing was measured"
PRESET_FOR = {256: "celeba-256", 512: "celeba-512"}
# measured in this order: a run stopped at the GPU session's cap keeps the fast path's figure
PATHS = {"ssgan": {"backend": "triton", "precision": "bf16", "compile": False},
         "reference": {"backend": "reference", "precision": "fp32", "compile": False},
         "compiled": {"backend": "reference", "precision": "fp32", "compile": True}}
TARGET_S = 60.0  # batch 8, 512 px, 400 steps on one H100


def time_search(G: SemanticGenerator, images: torch.Tensor, steps: int, warmup: int, backend: str,
                precision: str, sync: Callable[[], None],
                clock: Callable[[], float] = time.perf_counter, compile: bool = False) -> tuple[float, float]:
    """Seconds for one latent search of ``steps`` steps on ``images``, after a ``warmup``-step search,
    and the warm-up's seconds (with ``compile``: compiling, or loading inductor's cache)."""
    T.configure_precision("fp32" if precision == "fp32" else "tf32")
    mean = E.mean_w(G, 0, 10000)
    def cfg(n: int) -> I.InversionConfig:
        return I.InversionConfig(steps=n, precision=precision, compile=compile)

    with use_backend(backend):
        t0 = clock()
        if warmup:
            I.invert_latents(G, images, cfg=cfg(warmup), mean=mean)
        sync()
        t1 = clock()
        I.invert_latents(G, images, cfg=cfg(steps), mean=mean)
        sync()
    return clock() - t1, t1 - t0


def make_record(resolution: int, batch: int, steps: int, cfg_name: str, ref: dict, fast: dict,
                compiled: dict | None = None) -> dict:
    """One entry from the measurements ({s, peak_mib, warmup_s, error}) of the reference, ssgan and
    compiled (reference ops through inductor, fp32) paths."""
    compiled = compiled or {}

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
        "compiled_s": compiled.get("s"), "compiled_s_per_image": per(compiled, lambda s: s / batch),
        "compiled_speedup": ref["s"] / compiled["s"] if ref.get("s") and compiled.get("s") else None,
        "reference_warmup_s": ref.get("warmup_s"), "compiled_warmup_s": compiled.get("warmup_s"),
    }
    if resolution == 512 and batch == 8 and steps == 400 and fast.get("s"):
        rec["target_s"] = TARGET_S
        rec["target_met"] = fast["s"] < TARGET_S
    errors = {k: v["error"] for k, v in (("reference", ref), ("ssgan", fast), ("compiled", compiled))
              if v.get("error")}
    if errors:
        rec["errors"] = errors
    return rec


def format_table(report: dict) -> str:
    lines = [f"device {report['device']}  commit {report['commit']}",
             f"{'benchmark':12s} {'batch':>5s} {'steps':>5s} {'ref s':>8s} {'ssgan s':>8s} {'speedup':>8s} "
             f"{'ref s/img':>9s} {'s/img':>7s} {'img/s':>7s} {'compiled s/img':>14s} {'compile s':>9s}"]
    for r in report["benchmarks"]:
        c = r["config"]
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"{r['name']:12s} {c['batch']:5d} {c['steps']:5d} {fmt(r['reference_s'], '8.1f')} "
                     f"{fmt(r['ssgan_s'], '8.1f')} {speedup:>8s} "
                     f"{fmt(r['reference_s_per_image'], '9.2f')} {fmt(r['ssgan_s_per_image'], '7.2f')} "
                     f"{fmt(r['ssgan_images_per_s'] or r['reference_images_per_s'], '7.3f')} "
                     f"{fmt(r.get('compiled_s_per_image'), '14.2f')} "
                     f"{fmt(r.get('compiled_warmup_s'), '9.1f')}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.invert", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None,
                   help="output path (default bench/results/invert-<device>-<date>.json)")
    p.add_argument("--resolutions", default="256,512")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda", help="cuda, or cpu (reference and compiled paths)")
    p.add_argument("--paths", default=",".join(PATHS), help="which of ssgan, reference, compiled to run")
    p.add_argument("--preset", default=None, help="a preset instead of celeba-<res> (e.g. tiny on CPU)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, tiny preset at 32 px, batch 2, 2 steps: the GPU session's dry run (plumbing)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op CPU threads (default: the cores this process may use)")
    args = p.parse_args(argv)
    if set(args.paths.split(",")) - set(PATHS):
        p.error(f"--paths takes names from {', '.join(PATHS)}, not {args.paths!r}")
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
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        use_all_cores()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    env = environment()
    cache = use_inductor_cache()
    cache_state = "warm" if cache.is_dir() and any(cache.iterdir()) else "cold"
    report = {**env, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "what": "latent search of ssgan invert (no generator tuning): wall time of the whole search, "
                      "device synchronised at both ends, after a warm-up search",
              "loss": "MS-SSIM perceptual (pooled to 256 px) + 0.1 MSE + 1.0 mean-latent term",
              "data": "targets rendered by the (random-weight) model itself, resident on the device",
              "reference": "reference backend, fp32 (no TF32), eager",
              "ssgan": "triton backend, generator under bf16 autocast, TF32 allowed",
              "compiled": "reference backend, fp32, the search step's forward through torch.compile "
                          "(inductor); its warm-up compiles or loads inductor's on-disk cache",
              "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "inductor_cache": {"dir": str(cache), "at_start": cache_state},
              "budget": {"resolutions": args.resolutions, "batch": args.batch, "steps": args.steps,
                         "warmup": args.warmup},
              "dry_run": args.dry_run, "benchmarks": [], "complete": False}
    if not cuda:
        report["note"] = ("CPU run: reference and compiled paths; no GPU figures exist until this runs "
                          "on a GPU")
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
            if path_name not in args.paths.split(","):
                continue
            if not cuda and opts["backend"] == "triton":
                measured[path_name] = {"error": "not run: the Triton ops need a GPU"}
                continue
            log(f"[{cfg.size}px] {path_name}: {args.steps} steps, batch {args.batch}")
            try:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                s, warm = time_search(G, images, args.steps, args.warmup, opts["backend"], opts["precision"],
                                      sync, compile=opts["compile"])
                peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
                measured[path_name] = {"s": s, "peak_mib": peak, "warmup_s": round(warm, 2)}
                log(f"[{cfg.size}px] {path_name}: {s:.1f} s ({s / args.batch:.2f} s per image)")
            except torch.cuda.OutOfMemoryError as e:
                measured[path_name] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
            finally:
                if cuda:
                    torch.cuda.empty_cache()
            partial = make_record(cfg.size, args.batch, args.steps, name, measured.get("reference", {}),
                                  measured.get("ssgan", {}), measured.get("compiled"))
            save(records + [partial], False)  # a search stopped later keeps this one
        records.append(partial)
    report["load_average_end"] = os.getloadavg()
    save(records, True)
    print(format_table(report))
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
