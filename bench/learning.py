"""The fast path learns as the reference does: one model, seed, data order and budget, trained on
both paths, then the same mask measures on what each learned.

Usage (from the repository root)::

    python -m bench.learning                    # CUDA: tiny preset, 32 px, batch 16, 16 kimg per path
    TRITON_INTERPRET=1 python -m bench.learning --device cpu   # CPU: 16 px, 10 steps (see below)
    TRITON_INTERPRET=1 python -m bench.learning --dry-run --json OUT.json   # the GPU session's dry run

* ``reference``: ``SSGAN_BACKEND=reference`` ops, fp32 (no TF32), eager;
* ``fast``: the Triton ops, bf16 autocast (fp32 weights and losses), the D- and G-step forwards
  under ``torch.compile`` (inductor on CUDA), R1 / path length eager (``ssgan.train.steps``).

Both paths start from the same initial weights (seed), see the same batches of the built-in
dataset (``SyntheticFaces``, the sampler of ``train.py``) and draw their latents from identically
seeded generators; each iteration is ``train.py``'s (``bench.train.StepRunner``: D, lazy R1, G,
lazy path length, G-EMA) with ``train.py``'s defaults for new runs: R1 weights fitted to the size
and batch (``--r1-img auto --r1-seg auto``: :func:`ssgan.train.steps.r1_auto`) and the G-EMA
ramp-up (``ssgan.train.spec.DEFAULT_EMA_RAMPUP``, :func:`ssgan.train.steps.ema_beta`). On CPU the
fast path runs under ``TRITON_INTERPRET=1`` with the ``aot_eager`` compile backend and only ``fuse`` on
Triton (``--triton-ops``; under the interpreter ``upfirdn2d`` needs about a second per call and
``grouped_mlp``'s bf16 emulation minutes per step), on the tiny preset at 16 px for 10 steps of
batch 4 (~40 s per step with ``fuse``, plus ~2.5 min of compilation, on a busy 2-core machine).
The two paths' trajectories diverge after the first rounding difference (a GAN is chaotic), so
what must agree is what they learn, not the weights:

Mask measures (:func:`mask_measures`, on G-EMA and on G, fixed latents, fixed noise):

* the per-class pixel frequencies of argmax(seg) and their L1 distance to the data's
  (:func:`ssgan.metrics.segmentation.pixel_frequencies`, :func:`frequency_l1`);
* the fine-vs-coarse agreement: mIoU between argmax(seg) and argmax(coarse) upsampled to the
  image (:func:`fine_coarse_miou`, the ``maskiou`` metric's formula).

Pass (:func:`compare`, on G-EMA, the generator one samples from): the L1 distance between the two
paths' class frequencies and the absolute difference of their mIoUs are within the stated
tolerances. G's comparison is reported too, for information: early in training G's masks swing
from step to step, so two runs drift apart on G long before their averages (G-EMA) do. With
``--seed-spread`` a third run (the reference from another seed) measures how far two runs that
differ only by chance land apart, for context (on CPU, 200 steps: L1 between the paths' G
frequencies 0.18, between the two seeds' 1.39).

Writes JSON to ``--json`` (default ``bench/results/learning-<device>-<date>.json``), rewritten
after each run (``complete`` false until the last), and, when ``$OUT`` is set, a copy there.
``--dry-run`` (the GPU session's CPU dry run): the CPU budget cut to 2 steps of batch 4, 16
latents measured, no Triton op, no seed-spread run; it exits 0 whatever the verdict (two steps
prove the plumbing, not the learning).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench.kernels import default_path, slug, write_json
from bench.timing import environment
from bench.train import StepRunner
from ssgan.data import images_to_float, label_to_mask
from ssgan.data.loader import make_step_loader
from ssgan.data.synthetic import SyntheticFaces
from ssgan.kernels import use_backend
from ssgan.kernels.backend import OPS
from ssgan.metrics.segmentation import mask_agreement_counts, mean_iou, pixel_frequencies
from ssgan.model.config import SSGANConfig, preset
from ssgan.model.generator import SemanticGenerator
from ssgan.train import steps as T
from ssgan.train.spec import DEFAULT_EMA_RAMPUP, float_or_auto

PATHS = {
    "reference": {"backend": "reference", "precision": "fp32", "compile": False},
    "fast": {"backend": "triton", "precision": "bf16", "compile": True},
}
CPU_TRITON_OPS = ("fuse",)  # cheap enough under the Triton interpreter for a CPU training run
#: 16 px variant of the tiny preset for CPU runs (same widths, one up-sampling stage fewer)
CPU_CONFIG = preset("tiny").replace(size=16, coarse_size=8)
TOL_FREQ_L1 = 0.10  # L1 between the two paths' class-frequency vectors (fraction of pixels moved)
TOL_MIOU = 0.10  # absolute difference of the fine-vs-coarse mIoUs


# ------------------------------------------------------------------------------------------------
# Mask measures (one place; issue 8 asks to unify them with ssgan/metrics at merge)
# ------------------------------------------------------------------------------------------------


def frequency_l1(p: torch.Tensor, q: torch.Tensor) -> float:
    """L1 distance Σ_k |p_k − q_k| of two class-frequency vectors: twice the fraction of pixels
    that would have to change class to turn one distribution into the other (0 … 2)."""
    return float((p.double() - q.double()).abs().sum())


def fine_coarse_miou(seg: torch.Tensor, coarse: torch.Tensor) -> float:
    """Agreement of the generator's two masks: mean IoU of argmax(seg) (B, K, H, W logits) and
    argmax(coarse) (B, K, S, S) nearest-upsampled to H × W, all samples pooled (the ``maskiou``
    metric's formula, :func:`ssgan.metrics.segmentation.mask_agreement_counts`)."""
    return float(mean_iou(mask_agreement_counts(seg.argmax(1), coarse.argmax(1), seg.shape[1])))


@torch.no_grad()
def mask_measures(G: SemanticGenerator, z: torch.Tensor, data_freqs: torch.Tensor,
                  batch: int = 64) -> dict:
    """The mask measures of generator ``G`` on latents ``z`` (fixed noise, no truncation, fp32
    reference ops): {class_frequencies, frequency_l1_to_data, fine_coarse_miou}."""
    was_training = G.training
    G.eval()
    fine, coarse = [], []
    with use_backend("reference"):
        for chunk in z.split(batch):
            out = G.synthesize(G.mix_styles([G.mapping(chunk)]), randomize_noise=False)
            fine.append(out.seg.float().cpu())
            coarse.append(out.coarse.float().cpu())
    G.train(was_training)
    seg = torch.cat(fine)
    freqs = pixel_frequencies(seg.argmax(1), G.config.seg_dim)
    return {"class_frequencies": [round(float(f), 5) for f in freqs],
            "frequency_l1_to_data": frequency_l1(freqs, data_freqs),
            "fine_coarse_miou": fine_coarse_miou(seg, torch.cat(coarse))}


def compare(ref: dict, other: dict, tol_freq: float = TOL_FREQ_L1, tol_miou: float = TOL_MIOU) -> dict:
    """Whether two runs' :func:`mask_measures` agree: the L1 distance between their class
    frequencies ≤ ``tol_freq`` and |ΔmIoU| ≤ ``tol_miou``."""
    freq = frequency_l1(torch.tensor(ref["class_frequencies"]), torch.tensor(other["class_frequencies"]))
    miou = abs(ref["fine_coarse_miou"] - other["fine_coarse_miou"])
    return {"frequency_l1_between": freq, "miou_difference": miou,
            "tolerance": {"frequency_l1_between": tol_freq, "miou_difference": tol_miou},
            "pass": freq <= tol_freq and miou <= tol_miou}


# ------------------------------------------------------------------------------------------------
# Training one path
# ------------------------------------------------------------------------------------------------


def data_frequencies(dataset: SyntheticFaces, n: int) -> torch.Tensor:
    """Class frequencies of the first ``n`` items' label maps."""
    labels = torch.stack([torch.as_tensor(dataset[i]["label"]) for i in range(min(n, len(dataset)))])
    return pixel_frequencies(labels, dataset.seg_dim)


def train_path(path: str, cfg: SSGANConfig, tc: T.TrainConfig, dataset: SyntheticFaces, steps: int,
               batch: int, device: torch.device, seed: int = 0, ops: tuple[str, ...] | None = None,
               log: Callable[[str], None] | None = None) -> tuple[StepRunner, float]:
    """Train ``steps`` iterations of ``path`` (a key of :data:`PATHS`) on ``dataset``; returns the
    runner (G, G-EMA, last losses) and the wall time in seconds."""
    opts = PATHS[path]
    torch._dynamo.reset()
    compile_backend = "inductor" if device.type == "cuda" else "aot_eager"
    runner = StepRunner(cfg, batch, device, opts["backend"], opts["precision"], opts["compile"],
                        compile_backend=compile_backend, seed=seed, tc=tc,
                        ops=ops if opts["backend"] == "triton" else None)
    loader = make_step_loader(dataset, batch, seed=seed, workers=0, pin_memory=device.type == "cuda")
    t0 = time.perf_counter()
    every = max(1, steps // 10)
    for i, item in zip(range(steps), loader):
        runner.real = images_to_float(item["image"].to(device, non_blocking=True))  # uint8 travels
        runner.mask = label_to_mask(item["label"].to(device, non_blocking=True), cfg.seg_dim)
        runner.iteration(i)
        if log and ((i + 1) % every == 0 or i + 1 == steps):
            losses = " ".join(f"{k} {runner.losses[k].item():.3f}" for k in ("d", "g", "mask"))
            log(f"  {path}: step {i + 1}/{steps}  {losses}  ({time.perf_counter() - t0:.0f} s)")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return runner, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.learning", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--kimg", type=float, default=None,
                   help="images shown to D per path, in thousands (default: 16 on CUDA, 0.04 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="default: 16 on CUDA, 4 on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-eval", type=int, default=None,
                   help="fixed latents measured (default: 512 on CUDA, 64 on CPU)")
    p.add_argument("--r1-img", type=float_or_auto, default="auto",
                   help="R1 weight on D's image gradients; auto: as train.py (ssgan.train.steps.r1_auto)")
    p.add_argument("--r1-seg", type=float_or_auto, default="auto",
                   help="R1 weight on D's mask gradients; auto: as train.py (ssgan.train.steps.r1_auto)")
    p.add_argument("--ema-rampup", type=float, default=DEFAULT_EMA_RAMPUP,
                   help="G-EMA ramp-up (ssgan.train.steps.ema_beta; train.py's default for new runs)")
    p.add_argument("--tol-freq", type=float, default=TOL_FREQ_L1)
    p.add_argument("--tol-miou", type=float, default=TOL_MIOU)
    p.add_argument("--seed-spread", action=argparse.BooleanOptionalAction, default=None,
                   help="also train the reference from seed+1 (default: on CUDA only)")
    p.add_argument("--triton-ops", default=None,
                   help=f"comma-separated ops the fast path runs with Triton (default: all on CUDA, "
                        f"{','.join(CPU_TRITON_OPS)} on CPU; of {','.join(OPS)})")
    p.add_argument("--json", default=None,
                   help="output path (default bench/results/learning-<device>-<date>.json)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, 2 steps of batch 4, 16 latents, no Triton op, no seed spread: checks the "
                        "plumbing (the GPU session's dry run); exit 0 whatever the verdict")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.kimg, args.n_eval, args.seed_spread = "cpu", 0.008, 16, False
        args.triton_ops = "" if args.triton_ops is None else args.triton_ops
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu for the small CPU budget", file=sys.stderr)
        return 2
    cuda = dev.type == "cuda"
    if not cuda and os.environ.get("TRITON_INTERPRET") != "1":
        print("on CPU the fast path's Triton ops need the interpreter: run with TRITON_INTERPRET=1",
              file=sys.stderr)
        return 2
    if not cuda:
        torch.set_num_threads(1)  # as train.py on CPU: the tiny model's ops are too small for more
    cfg = preset("tiny") if cuda else CPU_CONFIG
    batch = args.batch or (16 if cuda else 4)
    kimg = args.kimg if args.kimg is not None else (16.0 if cuda else 0.04)
    steps = max(1, round(kimg * 1000 / batch))
    n_eval = args.n_eval or (512 if cuda else 64)
    seed_spread = cuda if args.seed_spread is None else args.seed_spread
    ops = (tuple(o for o in args.triton_ops.split(",") if o) if args.triton_ops is not None
           else None if cuda else CPU_TRITON_OPS)
    r1 = T.r1_auto(cfg, batch)
    r1_img, r1_seg = (r1[j] if v == "auto" else v for j, v in enumerate((args.r1_img, args.r1_seg)))
    tc = T.TrainConfig(r1_img=r1_img, r1_seg=r1_seg, ema_rampup=args.ema_rampup)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    dataset = SyntheticFaces(cfg.size, length=10000, seed=0, seg_dim=cfg.seg_dim)
    data_freqs = data_frequencies(dataset, 1024)
    z = torch.randn(n_eval, cfg.style_dim, generator=torch.Generator().manual_seed(12345)).to(dev)
    torch.manual_seed(args.seed)
    initial = mask_measures(SemanticGenerator(cfg).to(dev), z, data_freqs)  # the runs' common start
    log(f"training {steps} steps of batch {batch} ({steps * batch / 1000:g} kimg) at {cfg.size} px on "
        f"{dev} per path, R1 γ {tc.r1_img:g} / {tc.r1_seg:g}, EMA ramp-up {tc.ema_rampup:g}")
    env = environment()
    compiler = "inductor" if cuda else "aot_eager, TRITON_INTERPRET=1"
    runs: dict[str, dict] = {}
    report = {
        "device": env["device"], "commit": env["commit"], "torch": env["torch"], "triton": env["triton"],
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "dry_run": args.dry_run,
        "config": {**cfg.to_dict(), "batch": batch, "steps": steps, "kimg": steps * batch / 1000,
                   "r1_img": tc.r1_img, "r1_seg": tc.r1_seg, "ema_rampup": tc.ema_rampup, "n_eval": n_eval,
                   "seed_spread": seed_spread, "data": "SyntheticFaces"},
        "paths": {"reference": "reference ops, fp32, eager",
                  "fast": (f"triton ops ({'all' if ops is None else ', '.join(ops) or 'none'}), bf16 "
                           f"autocast, torch.compile ({compiler})")},
        "data_frequencies": [round(float(f), 5) for f in data_freqs],
        "initial": initial,
        "runs": runs,
        "criterion": "the G-EMA comparison; G's is for information",
        "complete": False,
    }
    path = Path(args.json) if args.json else default_path(env["device"]).with_name(
        f"learning-{slug(env['device'])}-{_dt.date.today().isoformat()}.json")
    plan = [("reference", "reference", args.seed), ("fast", "fast", args.seed)]
    if seed_spread:
        plan.append(("reference_seed+1", "reference", args.seed + 1))
    for name, kind, seed in plan:
        runner, seconds = train_path(kind, cfg, tc, dataset, steps, batch, dev, seed, ops, log)
        runs[name] = {"path": kind, "seed": seed, "seconds": seconds,
                      "last_losses": {k: float(v) for k, v in runner.losses.items()},
                      "g_ema": mask_measures(runner.G_ema, z, data_freqs),
                      "g": mask_measures(runner.G, z, data_freqs)}
        del runner
        if name in ("fast", "reference_seed+1"):  # compared with the reference run
            key = "comparison" if name == "fast" else "seed_spread"
            report[key] = {which: compare(runs["reference"][which], runs[name][which], args.tol_freq,
                                          args.tol_miou) for which in ("g_ema", "g")}
        if name == "fast":
            report["pass"] = report["comparison"]["g_ema"]["pass"]
        report["complete"] = len(runs) == len(plan)
        write_json(report, path)  # after each run: a run stopped later keeps what finished
    print(format_summary(report))
    print(f"wrote {path}")
    if os.environ.get("OUT") and not args.dry_run:
        print(f"wrote {write_json(report, Path(os.environ['OUT']) / path.name)}")
    return 0 if report["pass"] or args.dry_run else 1


def format_summary(report: dict) -> str:
    """A few lines: the measures of each run and the verdict."""
    lines = [f"data class frequencies {report['data_frequencies']}",
             f"{'run':22s} {'net':6s} {'freq L1 to data':>16s} {'fine/coarse mIoU':>17s}  class frequencies"]
    rows = [("initial", "", report["initial"])] + [
        (name, which, run[which]) for name, run in report["runs"].items() for which in ("g_ema", "g")]
    for name, which, m in rows:
        lines.append(f"{name:22s} {which:6s} {m['frequency_l1_to_data']:16.3f} "
                     f"{m['fine_coarse_miou']:17.3f}  {m['class_frequencies']}")
    for which, c in report["comparison"].items():
        verdict = ("PASS" if c["pass"] else "FAIL") if which == "g_ema" else "(for information)"
        lines.append(f"fast vs reference ({which}): freq L1 {c['frequency_l1_between']:.3f} "
                     f"(tol {c['tolerance']['frequency_l1_between']}), ΔmIoU {c['miou_difference']:.3f} "
                     f"(tol {c['tolerance']['miou_difference']}): {verdict}")
    for which, c in report.get("seed_spread", {}).items():
        lines.append(f"reference vs reference from seed+1 ({which}): freq L1 "
                     f"{c['frequency_l1_between']:.3f}, ΔmIoU {c['miou_difference']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
