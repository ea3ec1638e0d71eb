"""End-to-end training-step benchmark: the reference eager path against the fast path.

Usage (on a CUDA machine, from the repository root)::

    python -m bench.train [--json OUT.json] [--resolutions 256,512 --batch 16 --steps 32 --warmup 4]
    python -m bench.train --device cpu --preset tiny --steps 2     # developer smoke run, not a benchmark

One *iteration* is what ``train.py`` does per step: D step; R1 when ``i % 16 == 0``; G step;
path length when ``i % 4 == 0``; G-EMA. The timed window is ``--steps`` iterations (a multiple of
16, so R1 and path length are amortised exactly) after ``--warmup`` iterations (compilation,
autotuning, cuDNN algorithm search; the first warm-up iteration runs all four steps). Data are
synthetic tensors already on the GPU (no loader cost), stated in the JSON.

* ``reference``: ``SSGAN_BACKEND=reference``, fp32 (no TF32), eager: the plain PyTorch maths that
  mirrors the official implementation.
* ``ssgan``: the Triton ops, bf16 autocast (fp32 master weights and losses), the D- and G-step
  forwards/backwards under ``torch.compile`` (inductor), R1 / path length eager with TF32.

Per resolution (the paper's celeba-256 and the released celeba-512 configurations, batch 16):
ms per iteration (wall time between device synchronisations / iterations), images/s, s/kimg,
peak memory (``max_memory_allocated`` over the timed window: weights, optimiser states and
activations), and model-FLOPs utilisation: the FLOPs of one step of each kind counted with
``torch.utils.flop_counter.FlopCounterMode`` on the reference path (matmuls and convolutions,
forward, backward and double backward), amortised as D + G + R1/16 + PL/4, divided by the time
and by the device's dense bf16 peak (the same peak for both paths).

Without CUDA (and without ``--device cpu``) it exits with status 2 and measures nothing. The report
code takes the measuring function as a parameter (:func:`collect`), tested on CPU with fakes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import sys
import time
from collections.abc import Callable, Sequence

import torch
from ssgan.kernels import use_backend
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from bench.kernels import device_peak, write_json
from bench.timing import environment
from ssgan import training as T
from ssgan.config import SSGANConfig, preset
from ssgan.discriminator import DualBranchDiscriminator
from ssgan.generator import SemanticGenerator

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

    def ema(self) -> None:
        T.ema_update(self.G_ema, self.G, self.tc.ema_decay)

    def iteration(self, i: int) -> None:
        T.configure_precision(self.precision)
        with use_backend(self.backend, self.ops):
            self.d()
            if i % self.tc.d_reg_every == 0:
                self.r1()
            self.g()
            if i % self.tc.g_reg_every == 0:
                self.pl()
            self.ema()

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


def time_iterations(runner: StepRunner, warmup: int, steps: int, sync: Callable[[], None],
                    clock: Callable[[], float] = time.perf_counter,
                    log: Callable[[str], None] | None = None) -> float:
    """Run ``warmup`` then ``steps`` iterations; milliseconds per timed iteration."""
    for i in range(warmup):
        runner.iteration(i)
        if log:
            log(f"  warm-up {i + 1}/{warmup}")
    sync()
    t0 = clock()
    for i in range(warmup, warmup + steps):
        runner.iteration(i)
    sync()
    return (clock() - t0) * 1e3 / steps


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
    }
    errors = {k: v["error"] for k, v in (("reference", ref), ("ssgan", fast)) if v.get("error")}
    if errors:
        rec["errors"] = errors
    return rec


def collect(resolutions: Sequence[int], batch: int, measure: Callable[[str, int], dict],
            peak_bf16: float | None, configs: Callable[[int], dict] | None = None) -> list[dict]:
    """``measure(path, resolution) -> {ms, peak_mib, flops?, error?}`` for path in PATHS; the first
    resolution's entry appears twice, as ``train_step`` and as ``train_step_<res>``."""
    records = []
    for n, res in enumerate(resolutions):
        ref, fast = measure("reference", res), measure("ssgan", res)
        cfg = configs(res) if configs else {}
        if n == 0:
            records.append(make_record(res, cfg, batch, ref, fast, peak_bf16, name="train_step"))
        records.append(make_record(res, cfg, batch, ref, fast, peak_bf16))
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
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    lines = [f"device {report.get('device')}  commit {report.get('commit')}",
             f"{'benchmark':16s} {'ref ms':>9s} {'ssgan ms':>9s} {'speedup':>8s} {'img/s':>8s} "
             f"{'s/kimg':>7s} {'ref MiB':>9s} {'ssgan MiB':>10s} {'MFU':>6s}"]
    for r in report["benchmarks"]:
        lines.append(f"{r['name']:16s} {f(r['reference_ms'], '9.1f')} {f(r['ssgan_ms'], '9.1f')} "
                     f"{f(r['speedup'], '7.2f')}x {f(r['images_per_s'], '8.1f')} "
                     f"{f(r['sec_per_kimg'], '7.2f')} "
                     f"{f(r['reference_peak_mib'], '9.0f')} {f(r['ssgan_peak_mib'], '10.0f')} "
                     f"{f(None if r['mfu'] is None else 100 * r['mfu'], '5.1f')}%")
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
    return p.parse_args(argv)


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

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def cfg_for(res):
        if args.preset:
            return preset(args.preset)
        return preset(PRESET_FOR.get(res) or "celeba-256").replace(size=res)

    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

        def sync():
            torch.cuda.synchronize(dev)
    else:
        def sync():
            pass


    def measure(path: str, res: int) -> dict:
        opts = PATHS[path]
        t0 = time.perf_counter()
        torch._dynamo.reset()
        runner = None
        try:
            backend = opts["backend"] if dev.type == "cuda" else "reference"  # no interpreter runs
            log(f"[{res}px] {path}: building (backend {backend}, {opts['precision']}, "
                f"compile {opts['compile']})")
            runner = StepRunner(cfg_for(res), args.batch, dev, backend, opts["precision"], opts["compile"],
                                compile_backend="inductor" if dev.type == "cuda" else "aot_eager")
            out: dict = {}
            if path == "reference":
                out["flops_by_step"] = runner.count_flops()
                out["flops"] = out["flops_by_step"]["iteration"]
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            out["ms"] = time_iterations(runner, args.warmup, args.steps, sync, log=log)
            if dev.type == "cuda":
                out["peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
            if runner.fwd.compile:
                out["compiled_graphs"] = T.compiled_graphs()
            log(f"[{res}px] {path}: {out['ms']:.1f} ms/iteration ({time.perf_counter() - t0:.0f} s)")
            return out
        except torch.cuda.OutOfMemoryError as e:
            log(f"[{res}px] {path}: out of memory")
            return {"error": f"out of memory: {str(e).splitlines()[0]}"}
        finally:
            del runner
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    env = environment()
    peak = device_peak(env["device"]) if bench else {"bf16": None, "source": "not a benchmark"}
    records = collect(resolutions, args.batch, measure, peak.get("bf16"),
                      configs=lambda res: {"preset": args.preset or PRESET_FOR.get(res)})
    extra = {"timing": {"warmup": args.warmup, "steps": args.steps,
                        "statistic": "wall time of the timed window / steps, device synchronised "
                                     "at both ends"}}
    if not bench:
        extra["note"] = ("developer smoke run (CPU or a non-paper preset; on CPU both paths use the "
                         "reference ops and compile with aot_eager): NOT a benchmark")
    report = make_report(records, env, peak, extra)
    print(format_table(report))
    if args.json or bench:
        from bench.kernels import default_path, slug
        path = args.json or default_path(env["device"]).with_name(
            f"train-{slug(env['device'])}-{_dt.date.today().isoformat()}.json")
        print(f"wrote {write_json(report, path)}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
