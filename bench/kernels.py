"""Microbenchmarks of the local generators + fusion of SemanticStyleGAN: reference vs ssgan (Triton).

Usage (on a CUDA machine, from the repository root)::

    python -m bench.kernels [--json OUT.json] [--batch 16 --classes 13 --layers 10 --channels 64
                             --feat 512 --size 64 --dtype bf16|fp32 --repeats 50 --warmup 10 --check
                             --class-sweep 5,13,32,64]

What is measured, at the paper configuration by default (B=16, K=13, L=10, C=64, F=512, S=64, so
P = S*S = 4096 pixels per class), with every parameter requiring grad as in training (styles, raw
weights, biases, to_depth and to_feat weights and biases; the positional input x does not):

* ``local_generators_fwd`` / ``local_generators_fwd_bwd``: modulated_weights -> grouped_mlp -> fuse;
* ``grouped_mlp_fwd`` / ``grouped_mlp_fwd_bwd``: the grouped MLP alone, on given effective weights;
* ``fusion_fwd`` / ``fusion_fwd_bwd``: the fusion alone, on given h and depth.

``*_fwd`` runs the forward with autograd recording (as in a training step); ``*_fwd_bwd`` runs the
forward and ``torch.autograd.grad`` of the outputs with a fixed random upstream gradient (the
backward of sum(out * g)), so gradients are returned, never accumulated into ``.grad``.

The baseline ("reference") is the ``reference`` backend in fp32, eager, default matmul precision:
the plain PyTorch maths that mirrors the official implementation. "ssgan" is the ``triton``
backend in the chosen dtype (default bf16), and in fp32 as well. Timing: CUDA events around each
call after warm-up (which also covers Triton autotuning), median of the repeats. Peak memory: a
separate call of each function between ``reset_peak_memory_stats`` and ``max_memory_allocated``,
minus the memory allocated just before the call (the resident inputs are excluded).

FLOPs counted (model FLOPs of the GEMMs only; see :func:`flops`): the grouped MLP forward is
2·B·K·P·L·C², the fusion GEMM forward 2·B·P·K·C·F; a backward is twice its forward, so a
forward+backward is three times the forward. The modulation/demodulation (B·K·L·C² multiply-adds),
the softmax and bias terms are not counted. Achieved TFLOP/s of the ssgan path and its percentage
of the device peak for its dtype: dense bf16 tensor-core peak (bf16) or non-tensor-core fp32 peak
(fp32, the Triton fp32 path uses IEEE fp32 dots) from :data:`PEAK_TFLOPS` by device name, else
measured with a large matmul at start-up (the JSON says which).

Speedup = reference_ms / ssgan_ms; memory_ratio = reference_peak_mib / ssgan_peak_mib (how many
times less extra memory the ssgan path needs).

``--class-sweep K,K,...`` then times ``local_generators_fwd_bwd`` once more at each class count
(the other shapes unchanged), into the JSON's ``class_sweep`` (``python -m bench.classes`` counts
the same sweep's bytes and FLOPs and measures its memory on CPU; docs/performance.md,
"Classes that scale").

Without CUDA the command measures nothing and exits with status 2. The report code takes the
measuring functions as parameters (:func:`collect`), so it is tested on CPU with fake timers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.session import fmt, write_json
from bench.timing import environment, matmul_tflops, peak_mib, time_ms
from ssgan.kernels import fuse, grouped_mlp, modulated_weights, use_backend

NO_CUDA_MESSAGE = "no CUDA device: GPU benchmarks only run on a GPU; nothing was measured"
GROUPS = ("local_generators", "grouped_mlp", "fusion")
NAMES = tuple(f"{g}_{p}" for g in GROUPS for p in ("fwd", "fwd_bwd"))
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
REPO = Path(__file__).resolve().parent.parent

# Dense peaks in TFLOP/s, by substring of torch.cuda.get_device_name() (first match wins, so the
# more specific names come first). bf16: tensor cores without sparsity; fp32: CUDA cores (no TF32).
PEAK_TFLOPS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("H100 PCIe", "H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0}),
    ("H100 NVL", "H100 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    ("H100", "H100 SXM", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    ("H200", "H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    ("H800", "H800 SXM", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    ("A100", "A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    ("A800", "A800", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    ("L40S", "L40S", {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6}),
    ("L4", "L4", {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3}),
)

# --check bounds on ||ssgan - reference|| / ||reference||, per tensor: at least CHECK_RTOL, and up to
# CHECK_FACTOR times the error of eager PyTorch in the same low precision (see :func:`check`).
CHECK_RTOL = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 1e-2}
CHECK_FACTOR = 2.0


# ------------------------------------------------------------------------------------------------
# Configuration, inputs, FLOPs
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """Shapes of one benchmark (paper configuration by default). P = S*S."""

    B: int = 16
    K: int = 13
    L: int = 10
    C: int = 64
    F: int = 512
    S: int = 64
    depth_layer: int = 6
    transparent: tuple[int, ...] = (10, 12)

    @property
    def P(self) -> int:
        return self.S * self.S

    def record(self, dtype: str) -> dict:
        """The ``config`` entry of a JSON record."""
        return {"B": self.B, "K": self.K, "L": self.L, "C": self.C, "F": self.F, "S": self.S, "dtype": dtype}


# The toy shapes of the CPU dry runs (``--dry-run``; Triton under its interpreter).
TOY = BenchConfig(B=2, K=3, L=3, C=16, F=32, S=8, depth_layer=2, transparent=(2,))
TOY_CLASS_SWEEP = (2, 4)  # --class-sweep in a dry run (the interpreter runs every program in Python)
SWEEP_CASE = "local_generators_fwd_bwd"  # what --class-sweep times at each K


def build_inputs(cfg: BenchConfig, device: str | torch.device = "cuda", dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the paper shapes (``device="meta"`` allocates nothing).

    Leaves requiring grad (as in training): styles (B,K,L,C), weight (K,L,C,C), bias (K,L,C),
    depth_w (K,C), depth_b (K,), feat_w (K,F,C), feat_b (K,F), and for the ops alone w_eff
    (B,K,L,C,C), h (B,K,P,C), depth (B,K,P). Not requiring grad: x (1,1,P,C), transparent (K,).
    The values are generated in fp32 on CPU-independent seeds and cast to ``dtype``."""
    B, K, L, C, F, P = cfg.B, cfg.K, cfg.L, cfg.C, cfg.F, cfg.P
    gen = None
    if torch.device(device).type != "meta":
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        t = torch.randn(*shape, device=device, dtype=torch.float32, generator=gen) * scale + shift
        return t.to(dtype)

    t = torch.zeros(K, device=device, dtype=torch.float32)
    idx = [i for i in cfg.transparent if 0 <= i < K]
    if idx:
        t[idx] = 1.0
    inputs = {
        "x": rand(1, 1, P, C),
        "styles": rand(B, K, L, C, scale=0.2, shift=1.0),  # affine(w) with its bias initialised to 1
        "weight": rand(K, L, C, C),
        "bias": rand(K, L, C, scale=0.1),
        "depth_w": rand(K, C, scale=1.0 / math.sqrt(C)),
        "depth_b": rand(K, scale=0.1),
        "feat_w": rand(K, F, C, scale=1.0 / math.sqrt(C)),
        "feat_b": rand(K, F, scale=0.1),
        "w_eff": rand(B, K, L, C, C, scale=1.0 / math.sqrt(C)),
        "h": rand(B, K, P, C),
        "depth": rand(B, K, P),
        "transparent": t if idx else None,
    }
    for name, v in inputs.items():
        if v is not None and name not in ("x", "transparent"):
            v.requires_grad_(True)
    return inputs


def cast_inputs(inputs: dict[str, torch.Tensor | None], dtype: torch.dtype) -> dict[str, torch.Tensor | None]:
    """Detached copies in ``dtype`` (floating leaves keep requires_grad; transparent stays fp32)."""
    out = {}
    for name, v in inputs.items():
        if v is None or name == "transparent":
            out[name] = v
            continue
        c = v.detach().to(dtype).clone()
        out[name] = c.requires_grad_(v.requires_grad)
    return out


def _mlp_forward_flops(cfg: BenchConfig) -> float:
    from ssgan.kernels.local_mlp import grouped_mlp_flops
    return float(grouped_mlp_flops(cfg.B, cfg.K, cfg.L, cfg.C, cfg.P, backward=False))


def _fusion_forward_flops(cfg: BenchConfig) -> float:
    from ssgan.kernels.fusion import fuse_flops
    return float(fuse_flops(cfg.B, cfg.K, cfg.C, cfg.F, cfg.P, backward=False))


def flops(name: str, cfg: BenchConfig) -> float:
    """Model FLOPs of benchmark ``name``: forward 2·B·K·P·L·C² (MLP) + 2·B·P·K·C·F (fusion GEMM),
    as the kernels' ``grouped_mlp_flops`` / ``fuse_flops`` helpers count them; ``*_fwd_bwd`` is three
    times the forward (backward = 2x forward: gradients of the activations and of the weights)."""
    group, _, phase = name.partition("_fwd")
    fwd = {"grouped_mlp": _mlp_forward_flops(cfg), "fusion": _fusion_forward_flops(cfg)}
    fwd["local_generators"] = fwd["grouped_mlp"] + fwd["fusion"]
    if group not in fwd or phase not in ("", "_bwd"):
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(NAMES)}")
    return fwd[group] * (3.0 if phase == "_bwd" else 1.0)


# ------------------------------------------------------------------------------------------------
# The functions measured
# ------------------------------------------------------------------------------------------------


def _grad_fn(forward: Callable, wrt: Sequence[torch.Tensor], upstream: Sequence[torch.Tensor]) -> Callable:
    def fwd_bwd():
        outs = forward()
        return outs, torch.autograd.grad(outs, list(wrt), list(upstream))
    return fwd_bwd


def make_cases(cfg: BenchConfig, inputs: dict, backend: str, seed: int = 1,
               upstream_dtype: torch.dtype | None = None) -> dict[str, Callable]:
    """name -> zero-argument callable running that benchmark once on ``inputs`` with ``backend``
    ('reference' | 'triton'). The callables return their outputs (fwd) or (outputs, gradients).
    The upstream gradients are random, rounded through ``upstream_dtype`` when given (so that a
    float64 reference sees the same values as a bf16 run)."""
    i = inputs
    dtype, device = i["h"].dtype, i["h"].device
    B, K, P, C, F = cfg.B, cfg.K, cfg.P, cfg.C, cfg.F
    gen = None
    if device.type != "meta":
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)

    def g(*shape):
        t = torch.randn(*shape, device=device, dtype=torch.float32, generator=gen)
        return t.to(upstream_dtype or dtype).to(dtype)

    up_feature, up_m, up_h = g(B, P, F), g(B, K, P), g(B, K, P, C)

    def local_generators():
        with use_backend(backend):
            w = modulated_weights(i["weight"], i["styles"])
            h, d = grouped_mlp(i["x"], w, i["bias"], i["depth_w"], i["depth_b"], cfg.depth_layer)
            return fuse(h, d, i["feat_w"], i["feat_b"], None, i["transparent"])

    def mlp():
        with use_backend(backend):
            return grouped_mlp(i["x"], i["w_eff"], i["bias"], i["depth_w"], i["depth_b"], cfg.depth_layer)

    def fusion():
        with use_backend(backend):
            return fuse(i["h"], i["depth"], i["feat_w"], i["feat_b"], None, i["transparent"])

    lg_wrt = [i[k] for k in ("styles", "weight", "bias", "depth_w", "depth_b", "feat_w", "feat_b")]
    mlp_wrt = [i[k] for k in ("w_eff", "bias", "depth_w", "depth_b")]
    fu_wrt = [i[k] for k in ("h", "depth", "feat_w", "feat_b")]
    return {
        "local_generators_fwd": local_generators,
        "local_generators_fwd_bwd": _grad_fn(local_generators, lg_wrt, (up_feature, up_m)),
        "grouped_mlp_fwd": mlp,
        "grouped_mlp_fwd_bwd": _grad_fn(mlp, mlp_wrt, (up_h, up_m)),
        "fusion_fwd": fusion,
        "fusion_fwd_bwd": _grad_fn(fusion, fu_wrt, (up_feature, up_m)),
    }


# ------------------------------------------------------------------------------------------------
# Measuring (CUDA)
# ------------------------------------------------------------------------------------------------


def device_peak(device_name: str, measure: Callable[[], dict] | None = None) -> dict:
    """{"bf16", "fp16", "fp32": TFLOP/s, "source": ...} from the table, else from ``measure()``."""
    for key, label, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return {**peaks, "source": f"table: {label} dense (bf16/fp16 tensor cores, fp32 without TF32)"}
    if measure is None:
        return {"bf16": None, "fp16": None, "fp32": None, "source": "unknown device, not measured"}
    return {**measure(), "source": "measured: large matmuls at start-up (unknown device name)"}


def measure_matmul_peak(n: int = 8192, repeats: int = 20) -> dict:
    """Achieved TFLOP/s of an n x n x n matmul in bf16 and fp16, and in fp32 without TF32."""
    return {key: matmul_tflops(n, DTYPES[key], "cuda", repeats=repeats)["tflops"]
            for key in ("bf16", "fp16", "fp32")}


# ------------------------------------------------------------------------------------------------
# Correctness check (--check)
# ------------------------------------------------------------------------------------------------


def _flatten(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for item in x for t in _flatten(item)]


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in fp64 (b the reference); inf if a is not finite."""
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(a).all():
        return math.inf
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check(cfg: BenchConfig, inputs: dict, dtype_name: str, names: Sequence[str] = NAMES) -> dict[str, dict]:
    """Compare every ``*_fwd_bwd`` case (outputs and gradients) of the triton backend in ``dtype_name``
    with the reference backend in fp32 on the same (rounded) input values.

    Each tensor's relative error ||triton - ref|| / ||ref|| must be at most
    ``max(CHECK_RTOL[dtype], CHECK_FACTOR * e)``, where e is the error of the *reference* backend run
    eagerly in the same low precision (0 for fp32): low-precision rounding through L chained layers
    and their backward legitimately costs several percent on some gradients, a wrong kernel costs
    O(1). Raises AssertionError otherwise. Returns name -> {"max_rel_error", "max_bound"}."""
    dtype = DTYPES[dtype_name]
    low = cast_inputs(inputs, dtype)
    ref_in = cast_inputs(low, torch.float32)  # the same values, in fp32
    tri, ref = make_cases(cfg, low, "triton"), make_cases(cfg, ref_in, "reference")
    eager_low = make_cases(cfg, low, "reference") if dtype != torch.float32 else None
    result, failures = {}, []
    for name in sorted({n.replace("_fwd_bwd", "").replace("_fwd", "") + "_fwd_bwd" for n in names}):
        want = [t.detach() for t in _flatten(ref[name]())]
        got = _flatten(tri[name]())
        errs = [rel_error(a, b) for a, b in zip(got, want)]
        del got
        base = [0.0] * len(want)
        if eager_low is not None:
            base = [rel_error(a, b) for a, b in zip(_flatten(eager_low[name]()), want)]
        bounds = [max(CHECK_RTOL[dtype_name], CHECK_FACTOR * e) for e in base]
        result[name] = {"max_rel_error": max(errs), "max_bound": max(bounds)}
        if len(errs) != len(want) or any(not e <= b for e, b in zip(errs, bounds)):
            failures.append(f"{name} [{dtype_name}]: relative errors {[f'{e:.2e}' for e in errs]}, "
                            f"bounds {[f'{b:.1e}' for b in bounds]}")
        del want
    if failures:
        raise AssertionError("triton does not match the reference: " + "; ".join(failures))
    return result


# ------------------------------------------------------------------------------------------------
# Collecting and reporting (no CUDA needed: measuring functions are parameters)
# ------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def collect(cfg: BenchConfig, dtypes: Sequence[str], measure_time: Callable[[Callable], float],
            measure_peak: Callable[[Callable], float], peak_tflops: dict, device: str | torch.device = "cuda",
            names: Sequence[str] = NAMES, log: Callable[[str], None] | None = None,
            on_record: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Measure every benchmark in ``names``: the reference (fp32) once per name, the ssgan backend in
    each of ``dtypes``. ``measure_time(fn) -> ms`` and ``measure_peak(fn) -> MiB | None`` do the
    measuring; ``on_record(records)`` is called after each record (to save partial results)."""
    base = build_inputs(cfg, device, torch.float32)
    ref_cases = make_cases(cfg, base, "reference")
    ref = {}
    for name in names:
        ref[name] = (measure_time(ref_cases[name]), measure_peak(ref_cases[name]))
        if log:
            log(f"reference  fp32  {name}: {ref[name][0]:.3f} ms")
    del ref_cases
    records = []
    for dtype_name in dtypes:
        inputs = base if DTYPES[dtype_name] == torch.float32 else cast_inputs(base, DTYPES[dtype_name])
        cases = make_cases(cfg, inputs, "triton")
        for name in names:
            ms, mib = measure_time(cases[name]), measure_peak(cases[name])
            ref_ms, ref_mib = ref[name]
            tflops = flops(name, cfg) / (ms * 1e-3) / 1e12 if ms > 0 else None
            peak = peak_tflops.get(dtype_name)
            records.append({
                "name": name,
                "config": cfg.record(dtype_name),
                "reference_ms": ref_ms,
                "ssgan_ms": ms,
                "speedup": _ratio(ref_ms, ms),
                "reference_peak_mib": ref_mib,
                "ssgan_peak_mib": mib,
                "memory_ratio": _ratio(ref_mib, mib),
                "ssgan_tflops": tflops,
                "pct_of_peak": None if tflops is None or not peak else 100.0 * tflops / peak,
                "gflop": flops(name, cfg) / 1e9,
            })
            if log:
                log(f"ssgan      {dtype_name:5s} {name}: {ms:.3f} ms")
            if on_record:
                on_record(records)
        del cases, inputs
    return records


def class_point(cfg: BenchConfig, dtypes: Sequence[str], measure_time: Callable[[Callable], float],
                measure_peak: Callable[[Callable], float], peak_tflops: dict, device: str | torch.device,
                log: Callable[[str], None] | None = None) -> list[dict]:
    """:data:`SWEEP_CASE` at ``cfg`` (one point of ``--class-sweep``), as :func:`collect` records; a
    point that runs out of device memory is one record saying so (the sweep goes on)."""
    try:
        return collect(cfg, dtypes, measure_time, measure_peak, peak_tflops, device, (SWEEP_CASE,), log)
    except torch.OutOfMemoryError as e:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [{"name": SWEEP_CASE, "config": cfg.record("any"), "error": f"out of memory: {e}"[:300]}]


def make_report(records: list[dict], env: dict, peak_tflops: dict, extra: dict | None = None) -> dict:
    """The JSON document: environment, date, peak and the records."""
    report = {
        "device": env.get("device"),
        "commit": env.get("commit"),
        "torch": env.get("torch"),
        "triton": env.get("triton"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "peak_tflops": peak_tflops,
        "baseline": "reference backend, fp32, eager (plain PyTorch, mirrors the official implementation)",
        "flops": "GEMM model FLOPs: MLP 2BKPLC^2, fusion 2BPKCF per forward; fwd_bwd = 3x forward",
        "memory": "peak allocated during one call minus allocated before it (resident inputs excluded)",
        "benchmarks": records,
    }
    report.update({k: v for k, v in env.items() if k not in report})
    if extra:
        report.update(extra)
    return report


def format_table(report: dict) -> str:
    """A readable table of the report."""
    head = (f"{'benchmark':26s} {'dtype':5s} {'ref ms':>9s} {'ssgan ms':>9s} {'speedup':>8s} "
            f"{'ref MiB':>9s} {'ssgan MiB':>10s} {'mem x':>6s} {'TFLOP/s':>8s} {'% peak':>7s}")
    lines = [f"device {report.get('device')}  commit {report.get('commit')}  torch {report.get('torch')}  "
             f"triton {report.get('triton')}  peak {report.get('peak_tflops')}", head, "-" * len(head)]
    for r in report["benchmarks"]:
        c = r["config"]
        lines.append(
            f"{r['name']:26s} {c['dtype']:5s} {fmt(r['reference_ms'], '9.3f')} "
            f"{fmt(r['ssgan_ms'], '9.3f')} "
            f"{fmt(r['speedup'], '7.2f')}x {fmt(r['reference_peak_mib'], '9.1f')} "
            f"{fmt(r['ssgan_peak_mib'], '10.1f')} {fmt(r['memory_ratio'], '6.2f')} "
            f"{fmt(r['ssgan_tflops'], '8.1f')} {fmt(r['pct_of_peak'], '7.1f')}")
    if report["benchmarks"]:
        c = report["benchmarks"][0]["config"]
        lines.append(f"config B={c['B']} K={c['K']} L={c['L']} C={c['C']} F={c['F']} S={c['S']} "
                     f"(P={c['S'] * c['S']})")
    return "\n".join(lines)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def default_path(device_name: str, date: _dt.date | None = None) -> Path:
    date = date or _dt.date.today()
    return REPO / "bench" / "results" / f"{slug(device_name)}-{date.isoformat()}.json"


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="output path (default bench/results/<device>-<date>.json)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=13)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--feat", type=int, default=512)
    p.add_argument("--size", type=int, default=64, help="coarse size S (P = S*S pixels)")
    p.add_argument("--depth-layer", type=int, default=6)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                   help="ssgan dtype (fp32 is measured as well)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(NAMES)}")
    p.add_argument("--check", action="store_true",
                   help="first assert that triton matches the reference at these shapes")
    p.add_argument("--class-sweep", default="",
                   help=f"then {SWEEP_CASE} again at each of these class counts K (e.g. 5,13,32,64; the "
                        "other shapes unchanged): the JSON's class_sweep, one record per K and dtype "
                        "(python -m bench.classes has the CPU side)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, toy shapes, host timer, one call per case, no memory figures (set "
                        "TRITON_INTERPRET=1): proves the command runs; NOT a benchmark")
    args = p.parse_args(argv)
    if args.dry_run:
        args.repeats, args.warmup = 1, 0
    return args


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(B=args.batch, K=args.classes, L=args.layers, C=args.channels, F=args.feat,
                       S=args.size, depth_layer=min(args.depth_layer, args.layers))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = TOY if args.dry_run else config_from_args(args)
    names = NAMES if not args.only else tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(NAMES)}", file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    dtypes = [args.dtype] + (["fp32"] if args.dtype != "fp32" else [])

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    env = environment()
    if args.dry_run:
        peak = {"bf16": None, "fp16": None, "fp32": None, "source": "dry run: not measured"}
    else:
        peak = device_peak(env["device"], measure_matmul_peak)
    extra: dict = {"dry_run": args.dry_run, "depth_layer": cfg.depth_layer,
                   "timing": {"warmup": args.warmup, "repeats": args.repeats,
                              "statistic": "median, host clock" if args.dry_run else "median, CUDA events"}}
    path = Path(args.json) if args.json else default_path(env["device"])
    if args.check:
        base = build_inputs(cfg, device, torch.float32)
        errors = {}
        for dt in dtypes:
            errors[dt] = check(cfg, base, dt, names)
            log(f"check {dt}: " + ", ".join(f"{k} {v['max_rel_error']:.2e} (bound {v['max_bound']:.1e})"
                                            for k, v in errors[dt].items()))
        del base
        extra["check"] = {"rtol": {dt: CHECK_RTOL[dt] for dt in dtypes}, "factor": CHECK_FACTOR,
                          "results": errors}
        if device == "cuda":
            torch.cuda.empty_cache()

    def measure_time(fn):
        return time_ms(fn, device, args.warmup, args.repeats)

    def save(records, complete):
        write_json(make_report(records, env, peak, {**extra, "complete": complete}), path)

    measure_peak = (lambda fn: None) if args.dry_run else peak_mib
    records = collect(cfg, dtypes, measure_time, measure_peak, peak, device, names, log,
                      on_record=lambda recs: save(recs, False))
    save(records, not args.class_sweep)
    if args.class_sweep:
        ks = TOY_CLASS_SWEEP if args.dry_run else [int(k) for k in args.class_sweep.split(",") if k.strip()]
        sweep = extra["class_sweep"] = []
        for k in ks:
            sweep += class_point(replace(cfg, K=k), dtypes, measure_time, measure_peak, peak, device, log)
            save(records, k == ks[-1])
    print(format_table(make_report(records, env, peak, extra)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
