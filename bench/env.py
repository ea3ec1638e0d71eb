"""Stage 1 of a GPU session: what the machine is, its two ceilings, and a smoke parity of every
Triton op.

    python -m bench.env --json OUT.json            # on the GPU machine
    python -m bench.env --json OUT.json --dry-run  # CPU, toy shapes, TRITON_INTERPRET=1

The JSON holds:

* ``device``: name, compute capability, SM count, L2 size, memory, driver version (from
  ``nvidia-smi``), CUDA runtime; and the versions of Python, torch, Triton and numpy;
* ``ceilings``: the measured device-to-device copy bandwidth (GB/s, bytes read + written, of a
  1 GiB buffer) and dense bf16 matrix-product rate (an 8192³ product on random data), the two
  numbers every other figure is judged against (see the performance targets in docs/performance.md);
* ``parity``: :func:`bench.parity.run_all` — relative errors of each op's outputs (``fwd``) and
  gradients (``bwd``) against float64, per dtype, with the bound and a verdict; ``parity_ok``.

The file is rewritten after each part, so a stage cut short still leaves what finished.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy
import torch

from bench import parity
from bench.session import write_json
from bench.timing import copy_gbps, environment, matmul_tflops


def driver_version() -> str:
    """The NVIDIA driver version from ``nvidia-smi`` ("unknown" if it cannot be read)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def device_facts(device: torch.device) -> dict:
    """Name, capability, SMs, L2, memory, driver and library versions of ``device``."""
    env = environment()
    facts = {"name": env["device"], "commit": env["commit"], "python": platform.python_version(),
             "torch": env["torch"], "triton": env["triton"], "numpy": numpy.__version__, "cuda": env["cuda"],
             "capability": None, "sm_count": None, "l2_mib": None, "memory_gib": None, "driver": None}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        facts.update(capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
                     l2_mib=getattr(p, "L2_cache_size", 0) / 2**20, memory_gib=p.total_memory / 2**30,
                     driver=driver_version())
    else:
        facts.update(sm_count=torch.get_num_threads(), name="cpu (dry run)")
    return facts


def ceilings(device: torch.device, toy: bool) -> dict:
    """Measured copy bandwidth and bf16 matrix-product rate (small sizes in a dry run)."""
    copy = copy_gbps(2**20 if toy else 2**30, device, warmup=1 if toy else 3, repeats=3 if toy else 20)
    mm = matmul_tflops(256 if toy else 8192, torch.bfloat16, device, warmup=1 if toy else 3,
                       repeats=3 if toy else 20)
    return {"copy_gb_per_s": copy["gb_per_s"], "copy": copy, "bf16_matmul_tflops": mm["tflops"], "matmul": mm}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.env", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="output path")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, toy shapes (set TRITON_INTERPRET=1): proves the stage runs; NOT a measurement")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: bench.env measures a GPU; use --dry-run on CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    path = Path(args.json)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    report: dict = {"dry_run": args.dry_run, "device": device_facts(device), "ceilings": None,
                    "parity_shapes": parity.shapes(args.dry_run), "parity": {}, "parity_ok": None,
                    "complete": False}
    write_json(report, path)
    report["ceilings"] = ceilings(device, args.dry_run)
    log(f"{report['device']['name']}: copy {report['ceilings']['copy_gb_per_s']:.4g} GB/s, "
        f"bf16 matmul {report['ceilings']['bf16_matmul_tflops']:.4g} TFLOP/s")
    write_json(report, path)

    def save(results):
        report["parity"] = results
        write_json(report, path)

    results = parity.run_all(device, args.dry_run, on_result=save, log=log)
    report["parity_ok"] = all(r["ok"] for per_dtype in results.values() for r in per_dtype.values())
    report["complete"] = True
    write_json(report, path)
    log(f"parity {'ok' if report['parity_ok'] else 'FAILED'}; wrote {path}")
    return 0 if report["parity_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
