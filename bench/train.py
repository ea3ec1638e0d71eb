"""End-to-end training-step benchmark: the reference eager path against the fast path.

Usage (on a CUDA machine, from the repository root)::

    python -m bench.train [--json OUT.json] [--resolutions 256,512 --batch 16 --steps 32 --warmup 4]
    python -m bench.train --device cpu --preset tiny --steps 2     # developer smoke run, not a benchmark
    python -m bench.train --dry-run --json OUT.json                # the GPU session's CPU dry run

One *iteration* is what ``train.py`` does per step: D step; R1 when ``i % 16 == 0``; G step;
path length when ``i % 4 == 0``; G-EMA. The timed window is ``--steps`` iterations (a multiple of
16, so R1 and path length are amortised exactly) after ``--warmup`` iterations (compilation,
autotuning, cuDNN algorithm search; the first warm-up iteration runs all four steps). Data are
synthetic tensors already on the GPU (no loader cost), stated in the JSON.

* ``reference``: ``SSGAN_BACKEND=reference``, fp32 (no TF32), eager: the plain PyTorch maths that
  mirrors the official implementation.
* ``ssgan``: the Triton ops, bf16 autocast (fp32 master weights and losses), the D- and G-step
  forwards/backwards under ``torch.compile`` (inductor), R1 / path length eager with TF32.

Compilation is reported apart from the steady state: the first iteration is timed phase by phase
(``compile.first_iteration_ms``: torch.compile, Triton autotuning and cuDNN's algorithm search all
happen there) and ``compile.compile_and_tune_s`` is its excess over the steady per-call times.
The timed window also gives a per-phase breakdown (``phases``: D, R1, G, PL, EMA; each phase's
ms per call and ms per iteration, the lazy R1 and PL amortised over the window) from device
events at the phase boundaries (no host synchronisation inside the window, so the breakdown
adds up to the iteration). With ``--profile``, one amortised window of the fast path (16
iterations: one R1, four PL) runs under ``torch.profiler`` and its top 25 CUDA kernels by total
time are kept in the JSON (``ssgan_profile``), not a trace file.

Per resolution (the paper's celeba-256 and the released celeba-512 configurations, batch 16):
ms per iteration (wall time between device synchronisations / iterations), images/s, s/kimg,
peak memory (``max_memory_allocated`` over the timed window: weights, optimiser states and
activations), and model-FLOPs utilisation: the FLOPs of one step of each kind counted with
``torch.utils.flop_counter.FlopCounterMode`` on the reference path (matmuls and convolutions,
forward, backward and double backward), amortised as D + G + R1/16 + PL/4, divided by the time
and by the device's dense bf16 peak (the same peak for both paths).

Without CUDA (and without ``--device cpu`` or ``--dry-run``) it exits with status 2 and measures
nothing. ``--dry-run``: the tiny preset on CPU, batch 2, R1 and PL every 2 iterations, both paths
on the reference ops (the Triton interpreter is far too slow for whole training steps; the ops'
Triton code is exercised by the other dry-run stages), the fast path compiled with aot_eager, no
FLOP count (slow on CPU; ``count_flops`` has its own test). The report
code takes the measuring function as a parameter (:func:`collect`), tested on CPU with fakes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from bench.kernels import device_peak
from bench.session import fmt, write_json
from bench.timing import PhaseClock, environment
from ssgan.kernels import use_backend
from ssgan.model.config import SSGANConfig, preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.generator import SemanticGenerator
from ssgan.train import steps as T

NO_CUDA_MESSAGE = "no CUDA device: the training benchmark only runs on a GPU; nothing was measured"
DATA_NOTE = "synthetic images and masks resident on the device (no data-loader cost)"
PRESET_FOR = {256: "celeba-256", 512: "celeba-512"}
PATHS = {
    "reference": {"backend": "reference", "precision": "fp32", "compile": False},
    "ssgan": {"backend": "triton", "precision": "bf16", "compile": True},
}


class StepRunner:
    """Models, optimisers and synthetic data for one training configuration; :meth:`iteration`
    runs one step of ``train.py`` (D, lazy R1, G, lazy path length, EMA)."""

    def __init__(self, cfg: SSGANConfig, batch: int, device: str | torch.device, backend: str,
                 precision: str, compile: bool, compile_backend: str = "inductor", seed: int = 0,
                 tc: T.TrainConfig | None = None, ops: tuple[str, ...] | None = None):
        """``ops``: the ops that run on ``backend`` (None: all; see ``ssgan.kernels.set_backend``)."""
        self.cfg, self.batch, self.device, self.backend = cfg, batch, torch.device(device), backend
        self.ops = ops
        self.tc = tc or T.TrainConfig()
        torch.manual_seed(seed)
        self.G = SemanticGenerator(cfg).to(self.device).train()
        self.D = DualBranchDiscriminator(cfg).to(self.device).train()
        self.G_ema = SemanticGenerator(cfg).to(self.device).eval()
        self.G_ema.load_state_dict(self.G.state_dict())
        T.requires_grad(self.G_ema, False)
        self.g_optim, self.d_optim = T.make_optimizers(self.G, self.D, self.tc)
        self.precision = precision
        self.fwd = T.StepForwards(compile=compile, precision=precision, backend=compile_backend)
        self.gen = torch.Generator(self.device).manual_seed(seed + 1)
        self.decide = torch.Generator().manual_seed(seed + 2)
        g = self.gen
        self.real = torch.rand(batch, 3, cfg.size, cfg.size, device=self.device, generator=g) * 2 - 1
        labels = torch.randint(0, cfg.seg_dim, (batch, cfg.size, cfg.size), device=self.device, generator=g)
        self.mask = torch.nn.functional.one_hot(labels, cfg.seg_dim).permute(0, 3, 1, 2).float() * 2 - 1
        self.mean_path_length = torch.zeros((), device=self.device)
        self.losses: dict[str, torch.Tensor] = {}

    def _z(self, n: int) -> list[torch.Tensor]:
        return T.sample_z(n, self.cfg.style_dim, self.tc.mixing, self.gen, self.decide)

    def d(self) -> None:
        T.requires_grad(self.G, False)
        T.requires_grad(self.D, True)
        self.losses.update(T.d_step(self.G, self.D, self.d_optim, self.real, self.mask, self._z(self.batch),
                                    self.tc, self.gen, None, self.fwd))

    def r1(self) -> None:
        self.losses.update(T.r1_step(self.D, self.d_optim, self.real, self.mask, self.tc))

    def g(self) -> None:
        T.requires_grad(self.G, True)
        T.requires_grad(self.D, False)
        self.losses.update(T.g_step(self.G, self.D, self.g_optim, self._z(self.batch), self.tc, self.gen,
                                    None, self.fwd))

    def pl(self) -> None:
        z = self._z(max(1, self.batch // self.tc.path_batch_shrink))
        out, self.mean_path_length = T.pl_step(self.G, self.g_optim, z, self.mean_path_length, self.tc,
                                               self.gen)
        self.losses.update(out)

    def ema(self, i: int = 0) -> None:
        """G-EMA update after iteration ``i`` (``i · batch`` images seen before it, as train.py)."""
        T.ema_update(self.G_ema, self.G, T.ema_beta(self.tc, self.batch, i * self.batch))

    def iteration(self, i: int, clock: PhaseClock | None = None) -> None:
        """Iteration ``i``; ``clock`` (optional) is marked at the start of each phase and at the end."""
        mark = clock.mark if clock is not None else (lambda phase: None)
        T.configure_precision(self.precision)
        with use_backend(self.backend, self.ops):
            mark("d")
            self.d()
            if i % self.tc.d_reg_every == 0:
                mark("r1")
                self.r1()
            mark("g")
            self.g()
            if i % self.tc.g_reg_every == 0:
                mark("pl")
                self.pl()
            mark("ema")
            self.ema(i)
            mark(None)

    @property
    def window(self) -> int:
        """Iterations of one amortised window (every lazy phase runs a whole number of times)."""
        return math.lcm(self.tc.d_reg_every, self.tc.g_reg_every)

    def count_flops(self) -> dict[str, float]:
        """FLOPs of one step of each kind (FlopCounterMode) and the amortised iteration."""
        out = {}
        T.configure_precision(self.precision)
        with use_backend(self.backend, self.ops):
            for name in ("d", "r1", "g", "pl"):
                with FlopCount() as counter:
                    getattr(self, name)()
                out[name] = float(counter.total)
        out["iteration"] = amortised_flops(out, self.tc.d_reg_every, self.tc.g_reg_every)
        return out


class FlopCount(TorchDispatchMode):
    """Sums FlopCounterMode's per-op formulas (matmuls, convolutions, attention) over every op
    dispatched, forward, backward and double backward alike. (FlopCounterMode itself tracks
    modules with backward hooks, which ``autograd.grad`` on leaf inputs, as in R1, rejects.)"""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def amortised_flops(f: dict[str, float], d_reg_every: int = 16, g_reg_every: int = 4) -> float:
    return f["d"] + f["g"] + f["r1"] / d_reg_every + f["pl"] / g_reg_every


PHASES = ("d", "r1", "g", "pl", "ema")


def time_iterations(runner: StepRunner, warmup: int, steps: int, sync: Callable[[], None],
                    clock: Callable[[], float] = time.perf_counter,
                    log: Callable[[str], None] | None = None, first: PhaseClock | None = None,
                    phases: PhaseClock | None = None) -> float:
    """Run ``warmup`` then ``steps`` iterations; milliseconds per timed iteration. ``first`` marks
    the phases of iteration 0, ``phases`` those of the timed iterations."""
    for i in range(warmup):
        runner.iteration(i, first if i == 0 else None)
        if log:
            log(f"  warm-up {i + 1}/{warmup}")
    sync()
    t0 = clock()
    for i in range(warmup, warmup + steps):
        runner.iteration(i, phases)
    sync()
    return (clock() - t0) * 1e3 / steps


def phase_breakdown(intervals: Sequence[tuple[str, float]], iterations: int) -> dict[str, dict]:
    """{phase: {calls, ms_per_call, ms_per_iteration}} from (phase, ms) intervals over
    ``iterations`` iterations; ms_per_iteration amortises the lazy phases over the window, so
    the phases' ms_per_iteration add up to the iteration."""
    out = {}
    for phase in PHASES:
        times = [ms for name, ms in intervals if name == phase]
        out[phase] = {"calls": len(times), "ms_per_call": sum(times) / len(times) if times else None,
                      "ms_per_iteration": sum(times) / iterations if iterations else None}
    return out


def compile_report(first: Sequence[tuple[str, float]], steady: dict[str, dict]) -> dict:
    """The first iteration per phase (compilation, autotuning, algorithm search) and its excess
    over the steady per-call times, in seconds."""
    first_ms = dict(first)
    excess = sum(ms - (steady.get(p, {}).get("ms_per_call") or 0.0) for p, ms in first_ms.items())
    return {"first_iteration_ms": first_ms, "first_iteration_total_ms": sum(first_ms.values()),
            "compile_and_tune_s": excess / 1e3}


def top_kernels(events, top: int = 25, cuda: bool = True) -> dict:
    """The ``top`` entries of a profiler's ``key_averages()`` by total self time: CUDA kernels
    (and copies) on a GPU, CPU ops otherwise. {unit, total_ms, kernels: [{name, calls, total_ms,
    mean_us, pct}], table}."""
    from torch.autograd import DeviceType

    if cuda:
        rows = [(e.key, e.count, e.self_device_time_total) for e in events
                if e.device_type == DeviceType.CUDA]
    else:
        rows = [(e.key, e.count, e.self_cpu_time_total) for e in events]
    total_us = sum(r[2] for r in rows)
    rows.sort(key=lambda r: -r[2])
    kernels = [{"name": name, "calls": calls, "total_ms": us / 1e3, "mean_us": us / max(calls, 1),
                "pct": 100.0 * us / total_us if total_us else None} for name, calls, us in rows[:top]]
    lines = [f"{'total ms':>9s} {'%':>5s} {'calls':>6s} {'mean us':>9s}  kernel"]
    lines += [f"{k['total_ms']:9.2f} {k['pct'] or 0:5.1f} {k['calls']:6d} {k['mean_us']:9.1f}  "
              f"{k['name'][:100]}" for k in kernels]
    return {"unit": "CUDA kernels" if cuda else "CPU ops (no GPU: dry run)", "total_ms": total_us / 1e3,
            "kernels": kernels, "table": "\n".join(lines)}


def profile_window(runner: StepRunner, start: int, sync: Callable[[], None], top: int = 25) -> dict:
    """Iterations ``start .. start + runner.window`` under torch.profiler: :func:`top_kernels`."""
    from torch.profiler import ProfilerActivity, profile

    cuda = runner.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for i in range(start, start + runner.window):
            runner.iteration(i)
        sync()
    out = top_kernels(prof.key_averages(), top, cuda)
    out["window_iterations"] = runner.window
    return out


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def make_record(resolution: int, cfg: dict, batch: int, ref: dict, fast: dict, peak_bf16: float | None,
                name: str | None = None) -> dict:
    """One benchmark entry from the two measurements ({ms, peak_mib, flops, error})."""
    ms, ref_ms = fast.get("ms"), ref.get("ms")
    flops = ref.get("flops") or fast.get("flops")
    ips = batch * 1e3 / ms if ms else None

    def mfu(t):
        return flops / (t * 1e-3) / (peak_bf16 * 1e12) if flops and t and peak_bf16 else None

    rec = {
        "name": name or f"train_step_{resolution}",
        "config": {**cfg, "resolution": resolution, "batch": batch},
        "reference_ms": ref_ms,
        "ssgan_ms": ms,
        "speedup": _ratio(ref_ms, ms),
        "reference_peak_mib": ref.get("peak_mib"),
        "ssgan_peak_mib": fast.get("peak_mib"),
        "memory_ratio": _ratio(ref.get("peak_mib"), fast.get("peak_mib")),
        "images_per_s": ips,
        "sec_per_kimg": 1e3 / ips if ips else None,
        "reference_images_per_s": batch * 1e3 / ref_ms if ref_ms else None,
        "mfu": mfu(ms),
        "reference_mfu": mfu(ref_ms),
        "model_gflop_per_iteration": flops / 1e9 if flops else None,
        "phases": {"reference": ref.get("phases"), "ssgan": fast.get("phases")},
        "compile": {"reference": ref.get("compile"), "ssgan": fast.get("compile")},
        "ssgan_profile": fast.get("profile"),
    }
    errors = {k: v["error"] for k, v in (("reference", ref), ("ssgan", fast)) if v.get("error")}
    if errors:
        rec["errors"] = errors
    return rec


PENDING = {"error": "not measured: the run ended before this path"}


def collect(resolutions: Sequence[int], batch: int, measure: Callable[[str, int], dict],
            peak_bf16: float | None, configs: Callable[[int], dict] | None = None,
            on_progress: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """``measure(path, resolution) -> {ms, peak_mib, flops?, phases?, compile?, profile?, error?}``
    for path in PATHS; the first resolution's entry appears twice, as ``train_step`` and as
    ``train_step_<res>``. ``on_progress(records)`` after each measurement (the path not yet
    measured is :data:`PENDING`), to save partial results."""
    records: list[dict] = []
    for n, res in enumerate(resolutions):
        cfg = configs(res) if configs else {}

        def entries(ref, fast, res=res, cfg=cfg, first=n == 0):
            names = ["train_step", None] if first else [None]
            return [make_record(res, cfg, batch, ref, fast, peak_bf16, name=name) for name in names]

        ref = measure("reference", res)
        if on_progress:
            on_progress(records + entries(ref, PENDING))
        records += entries(ref, measure("ssgan", res))
        if on_progress:
            on_progress(records)
    return records


def make_report(records: list[dict], env: dict, peak: dict, extra: dict | None = None) -> dict:
    report = {
        "device": env.get("device"), "commit": env.get("commit"), "torch": env.get("torch"),
        "triton": env.get("triton"), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "peak_tflops": peak,
        "baseline": "reference backend, fp32 (no TF32), eager (mirrors the official implementation)",
        "ssgan": "triton backend, bf16 autocast, torch.compile (inductor) D/G steps, eager R1/PL",
        "data": DATA_NOTE,
        "iteration": "D + R1 every 16 + G + path length every 4 (amortised over the timed window) + EMA",
        "memory": "torch.cuda.max_memory_allocated over the timed window (weights, optimisers, activations)",
        "mfu": "FlopCounterMode FLOPs of the reference path per amortised iteration / time / dense bf16 peak",
        "benchmarks": records,
    }
    report.update({k: v for k, v in env.items() if k not in report})
    report.update(extra or {})
    return report


def format_table(report: dict) -> str:
    lines = [f"device {report.get('device')}  commit {report.get('commit')}",
             f"{'benchmark':16s} {'ref ms':>9s} {'ssgan ms':>9s} {'speedup':>8s} {'img/s':>8s} "
             f"{'s/kimg':>7s} {'ref MiB':>9s} {'ssgan MiB':>10s} {'MFU':>6s}"]
    for r in report["benchmarks"]:
        lines.append(f"{r['name']:16s} {fmt(r['reference_ms'], '9.1f')} {fmt(r['ssgan_ms'], '9.1f')} "
                     f"{fmt(r['speedup'], '7.2f')}x {fmt(r['images_per_s'], '8.1f')} "
                     f"{fmt(r['sec_per_kimg'], '7.2f')} "
                     f"{fmt(r['reference_peak_mib'], '9.0f')} {fmt(r['ssgan_peak_mib'], '10.0f')} "
                     f"{fmt(None if r['mfu'] is None else 100 * r['mfu'], '5.1f')}%")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None,
                   help="output path (default bench/results/train-<device>-<date>.json)")
    p.add_argument("--resolutions", default="256,512")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=32, help="timed iterations (a multiple of 16 on CUDA)")
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a developer smoke run")
    p.add_argument("--preset", default=None, help="developer runs: a preset instead of celeba-<res>")
    p.add_argument("--profile", action="store_true",
                   help="profile one amortised window of the fast path: top 25 CUDA kernels in the JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, tiny preset, batch 2, lazy phases every 2 iterations, 2 steps: proves the "
                        "command runs; NOT a benchmark")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.preset, args.batch, args.steps, args.warmup = "cpu", "tiny", 2, 2, 1
    return args


def measure_path(path: str, cfg: SSGANConfig, args: argparse.Namespace, tc: T.TrainConfig,
                 log: Callable[[str], None]) -> dict:
    """One path's measurement at one configuration: {ms, peak_mib, flops (reference), phases,
    compile, profile (fast path with --profile), compiled_graphs} or {error}."""
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    opts = PATHS[path]
    res = cfg.size
    t0 = time.perf_counter()
    torch._dynamo.reset()
    runner = None

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    try:
        backend = opts["backend"] if cuda else "reference"  # whole steps are too slow for the interpreter
        log(f"[{res}px] {path}: building (backend {backend}, {opts['precision']}, compile {opts['compile']})")
        runner = StepRunner(cfg, args.batch, dev, backend, opts["precision"], opts["compile"],
                            compile_backend="inductor" if cuda else "aot_eager", tc=tc)
        out: dict = {"backend": backend}
        if path == "reference" and not args.dry_run:  # (counting is slow on CPU; tested apart)
            out["flops_by_step"] = runner.count_flops()
            out["flops"] = out["flops_by_step"]["iteration"]
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        first, phases = PhaseClock(dev), PhaseClock(dev)
        out["ms"] = time_iterations(runner, args.warmup, args.steps, sync, log=log, first=first,
                                    phases=phases)
        if cuda:
            out["peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["phases"] = phase_breakdown(phases.intervals(), args.steps)
        out["compile"] = compile_report(first.intervals(), out["phases"])
        if runner.fwd.compile:
            out["compiled_graphs"] = T.compiled_graphs()
        log(f"[{res}px] {path}: {out['ms']:.1f} ms/iteration, first iteration "
            f"{out['compile']['first_iteration_total_ms'] / 1e3:.1f} s ({time.perf_counter() - t0:.0f} s)")
        if args.profile and path == "ssgan":
            out["profile"] = profile_window(runner, args.warmup + args.steps, sync)
            log(f"[{res}px] {path}: profiled {out['profile']['window_iterations']} iterations")
        return out
    except torch.cuda.OutOfMemoryError as e:
        log(f"[{res}px] {path}: out of memory")
        return {"error": f"out of memory: {str(e).splitlines()[0]}"}
    finally:
        del runner
        if cuda:
            torch.cuda.empty_cache()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    bench = dev.type == "cuda" and args.preset is None
    if bench and args.steps % 16:
        print(f"--steps {args.steps} must be a multiple of 16 (R1 runs every 16 iterations)", file=sys.stderr)
        return 2
    resolutions = [int(r) for r in args.resolutions.split(",") if r.strip()]
    tc = T.TrainConfig(d_reg_every=2, g_reg_every=2) if args.dry_run else T.TrainConfig()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def cfg_for(res):
        if args.preset:
            return preset(args.preset)
        return preset(PRESET_FOR.get(res) or "celeba-256").replace(size=res)

    if args.dry_run:  # the tiny preset has one size
        resolutions = [cfg_for(resolutions[0]).size]
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    env = environment()
    peak = device_peak(env["device"]) if bench else {"bf16": None, "source": "not a benchmark"}
    extra = {"dry_run": args.dry_run,
             "timing": {"warmup": args.warmup, "steps": args.steps,
                        "statistic": "wall time of the timed window / steps, device synchronised "
                                     "at both ends",
                        "phases": "device events at the phase boundaries of the timed window"},
             "lazy_every": {"r1": tc.d_reg_every, "pl": tc.g_reg_every}}
    if not bench:
        extra["note"] = ("developer smoke run (CPU or a non-paper preset; on CPU both paths use the "
                         "reference ops and compile with aot_eager): NOT a benchmark")
    path = None
    if args.json or bench:
        from bench.kernels import default_path, slug
        path = Path(args.json) if args.json else default_path(env["device"]).with_name(
            f"train-{slug(env['device'])}-{_dt.date.today().isoformat()}.json")

    def save(records, complete):
        if path is not None:
            write_json(make_report(records, env, peak, {**extra, "complete": complete}), path)

    records = collect(resolutions, args.batch, lambda p, res: measure_path(p, cfg_for(res), args, tc, log),
                      peak.get("bf16"), configs=lambda res: {"preset": args.preset or PRESET_FOR.get(res)},
                      on_progress=lambda recs: save(recs, False))
    save(records, True)
    print(format_table(make_report(records, env, peak, extra)))
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
