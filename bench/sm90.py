"""Every Triton kernel of :mod:`ssgan.kernels`, at the paper's shapes, compiled for an H100
(sm_90) without a GPU: registers, spills, shared memory, occupancy, tensor-core and async-copy use.

Usage (from the repository root)::

    python -m bench.sm90 [--json bench/results/sm90.json] [--doc docs/performance_sm90.md]
    python -m bench.sm90 --quick    # bf16 only, one config (the largest tile) per kernel

Which kernels, shapes and configs: none is listed here. One training iteration of the paper's
configuration (``celeba-256``, batch 16, fast path: bf16 D and G steps, fp32 R1 and path length)
runs on fake tensors (:func:`bench.step_cost.run_iteration`), which records every ``ssgan::``
custom-op call with its shapes; each distinct call then runs its launcher on CPU stand-in tensors
with the Triton launches intercepted (:mod:`bench.triton_launches`), which yields every kernel
the op launches, its arguments, and the autotune configs its pruning keeps at those arguments.
Each (kernel, specialisation, config) is compiled for sm_90 (``triton.compile`` to a cubin, with
the binder and options of ``JITFunction.run``), once however many calls share it.

Per compiled kernel:

* ``regs`` (per thread), ``stack``/``local`` bytes and ``static_shared`` from ``cuobjdump
  --dump-resource-usage``; ``dynamic_shared`` from Triton's metadata; ``shared`` = both;
* ``spill_stores`` / ``spill_loads``: ``STL`` / ``LDL`` instructions in the SASS (local-memory
  stores and loads: register spills, since the kernels have no local arrays);
* occupancy on sm_90 (65,536 registers, 64 warps, 32 blocks, 228 KB shared per SM; 227 KB per
  block; registers allocated per warp in 256s; 1 KB of shared memory reserved per block):
  blocks and warps per SM, and the limiter (registers, shared memory, warps, blocks);
* ``wgmma`` (``wgmma.mma_async`` in the PTX: Hopper warp-group tensor-core MMAs), ``mma_sync``
  (Ampere-style ``mma.sync``), ``cp_async`` (``cp.async`` non-bulk: Ampere asynchronous copies),
  ``tma`` (``cp.async.bulk.tensor``: the Tensor Memory Accelerator).

The checks (``checks`` in the JSON, and ``tests/test_bench_sm90.py``): no bf16 kernel spills and
none needs more than 227 KB of shared memory per block, except those named in :data:`EXCEPTIONS`
with their cause and cost.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.session import write_json
from bench.step_cost import Counter, cpu_standin, run_iteration
from bench.timing import environment
from bench.triton_launches import SM90, Launch, intercepted

DOC = "docs/performance_sm90.md"  # the page the report is written to
SM90_REGS, SM90_WARPS, SM90_BLOCKS = 65536, 64, 32
SM90_SHARED_SM = 228 * 1024  # per SM
SM90_SHARED_BLOCK = 227 * 1024  # opt-in maximum per block (232448 bytes)
SHARED_RESERVED = 1024  # per block, by the system
PAPER = ("celeba-256", 16)

#: Configs allowed to fail a check, by (``module.kernel``, dtype, (block sizes..., warps, stages)):
#: (check, cause, cost). Figures from bench/results/sm90.json (Triton 3.9, ptxas of its wheel).
_FUSION_FWD_SPILL = ("spill",
                     "255-register cap: the 128 fp32 accumulators per thread of the BLOCK_P x BLOCK_F tile "
                     "plus the prologue's fusion weights; ptxas keeps one 4-byte value in local memory "
                     "across the class loop (8-byte stack)",
                     "one STL before and one LDL after the main loop per thread (plus one STL on the "
                     "K = 0 path): none inside the loop of wgmma; negligible")
EXCEPTIONS: dict[tuple[str, str, tuple[int, ...]], tuple[str, str, str]] = {
    ("ssgan.kernels.fusion._fwd_kernel", "bf16", (128, 128, 4, 4)): _FUSION_FWD_SPILL,
    ("ssgan.kernels.fusion._fwd_kernel", "bf16", (256, 128, 8, 3)): _FUSION_FWD_SPILL,
}


def exception_key(row: dict[str, Any]) -> tuple[str, str, tuple[int, ...]]:
    """The :data:`EXCEPTIONS` key of a report row."""
    return row["kernel"], row["dtype"], (*row["config"].values(), row["num_warps"], row["num_stages"])


def _tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def occupancy(regs: int, shared: int, warps: int) -> dict[str, Any]:
    """Theoretical occupancy of a block of ``warps`` warps using ``regs`` registers per thread and
    ``shared`` bytes of shared memory on sm_90: blocks and warps per SM, and what limits them."""
    per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
    limits = {"warps": SM90_WARPS // warps, "blocks": SM90_BLOCKS,  # ties: named in this order
              "registers": (SM90_REGS // per_warp) // warps,
              "shared memory": SM90_SHARED_SM // (shared + SHARED_RESERVED) if shared else SM90_BLOCKS}
    blocks = min(limits.values())
    limiter = min(limits, key=lambda k: (limits[k], list(limits).index(k)))
    return {"blocks_per_sm": blocks, "warps_per_sm": blocks * warps,
            "occupancy": blocks * warps / SM90_WARPS, "limiter": limiter}


def inspect_cubin(kernel) -> dict[str, Any]:
    """Resources and instruction use of a compiled kernel (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(kernel.asm["cubin"])
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", str(path)], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(path)], capture_output=True, text=True,
                              check=True).stdout
    res = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    ptx = kernel.asm["ptx"]
    dynamic = int(kernel.metadata.shared)
    return {"regs": res.get("REG", 0), "stack": res.get("STACK", 0), "local": res.get("LOCAL", 0),
            "static_shared": res.get("SHARED", 0), "dynamic_shared": dynamic,
            "shared": res.get("SHARED", 0) + dynamic,
            "spill_stores": len(re.findall(r"\bSTL(?:\.\w+)*\s", sass)),
            "spill_loads": len(re.findall(r"\bLDL(?:\.\w+)*\s", sass)),
            "wgmma": ptx.count("wgmma.mma_async"), "mma_sync": len(re.findall(r"\bmma\.sync", ptx)),
            "cp_async": len(re.findall(r"cp\.async\.c[ag]\.", ptx)), "tma": ptx.count("cp.async.bulk.tensor")}


def _dtype(signature: dict[str, str]) -> str:
    """The kernel's data dtype: that of its first pointer argument (``*bf16`` → bf16)."""
    return next((t[1:] for t in signature.values() if t.startswith("*")), "none")


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def capture_launches(preset_name: str, batch: int) -> list[tuple[str, Launch]]:
    """(op name, launch) of every Triton launch the ``ssgan::`` ops make in one fast-path training
    iteration at ``preset_name`` / ``batch`` (arguments kept: CPU stand-ins)."""
    from torch._library.custom_ops import OPDEFS  # the ops' Python implementations, undispatched

    counter = Counter()
    run_iteration(counter, preset_name, batch, "fast")
    out = []
    for call in counter.custom.values():
        op = str(call.op).rsplit(".", 1)[0].replace(".", "::", 1)
        with intercepted() as launches, torch.no_grad():
            OPDEFS[op]._init_fn(*cpu_standin(call.args), **cpu_standin(call.kwargs))
        out += [(op, _slim(launch)) for launch in launches]
    return out


def _slim(launch: Launch) -> Launch:
    """``launch`` with its tensor arguments replaced by empty ones of the same dtype and 16-byte
    alignment (all the binder reads of them): the full-size stand-ins are freed."""
    def small(a):
        if not isinstance(a, torch.Tensor):
            return a
        if a.data_ptr() % 16 == 0:
            return torch.empty(0, dtype=a.dtype)
        return torch.empty(16, dtype=a.dtype)[1:]
    launch.args = tuple(small(a) for a in launch.args)
    return launch


def compile_all(launches: list[tuple[str, Launch]], dtypes: Sequence[str] | None,
                largest_only: bool = False) -> list[dict[str, Any]]:
    """Compile every distinct (kernel, specialisation, config) for sm_90 and inspect it.
    ``dtypes``: keep only kernels of these data dtypes; ``largest_only``: per kernel and dtype,
    only the config with the largest tile (product of its block sizes, then warps and stages)."""
    from bench.triton_launches import compile_spec

    rows, seen, picked = [], set(), {}
    for op, launch in launches:
        for config in launch.configs:
            src, options = compile_spec(launch, config, SM90)
            dtype = _dtype(src.signature)
            if dtypes is not None and dtype not in dtypes:
                continue
            key = (launch.name, json.dumps(src.signature, sort_keys=True),
                   repr(sorted(src.constants.items())), repr(src.attrs), options["num_warps"],
                   options["num_stages"])
            if key in seen:
                continue
            seen.add(key)
            size = (math.prod(v for v in config.kwargs.values() if isinstance(v, int)), config.num_warps,
                    config.num_stages)
            if largest_only:
                best = picked.get((launch.name, dtype))
                if best is None or size > best[0]:
                    picked[(launch.name, dtype)] = (size, op, launch, config, src, options)
                continue
            rows.append(_row(op, launch, config, src, options))
    rows += [_row(*p[1:]) for p in picked.values()]
    return rows


def _row(op: str, launch: Launch, config, src, options: dict) -> dict[str, Any]:
    """Compile one kernel for sm_90 and describe it."""
    import triton

    kernel = triton.compile(src, target=SM90, options=options)
    res = inspect_cubin(kernel)
    names = launch.fn.arg_names
    consts = {names[k[0]]: _jsonable(v) for k, v in src.constants.items()
              if len(k) == 1 and names[k[0]] not in config.kwargs}
    dtype = _dtype(src.signature)
    row = {"op": op, "kernel": launch.name, "dtype": dtype, "autotuned": launch.autotuned,
           "config": {k: _jsonable(v) for k, v in config.kwargs.items()}, "num_warps": config.num_warps,
           "num_stages": config.num_stages, "constexprs": consts, **res,
           **occupancy(res["regs"], res["shared"], config.num_warps)}
    return row


def checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """bf16 kernels: no spill, shared memory within sm_90's per-block maximum; exceptions named."""
    failures, excused = [], []
    for r in rows:
        if r["dtype"] != "bf16":
            continue
        for check, bad in (("spill", r["spill_stores"] + r["spill_loads"] > 0 or r["stack"] > 0),
                           ("shared", r["shared"] > SM90_SHARED_BLOCK)):
            if not bad:
                continue
            exc = EXCEPTIONS.get(exception_key(r))
            entry = {"kernel": r["kernel"], "config": r["config"], "num_warps": r["num_warps"],
                     "num_stages": r["num_stages"], "check": check}
            if exc is not None and exc[0] == check:
                excused.append({**entry, "cause": exc[1], "cost": exc[2]})
            else:
                failures.append(entry)
    return {"ok": not failures, "failures": failures, "excused": excused}


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per kernel and dtype, the range over its compiled configs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["kernel"], r["dtype"]), []).append(r)
    lines = ["| kernel | dtype | compiled | regs | spilling | max shared (KB) | warps/SM | limiters | wgmma "
             "| mma.sync | cp.async | TMA |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def span(rs, key):
        lo, hi = min(r[key] for r in rs), max(r[key] for r in rs)
        return f"{lo}" if lo == hi else f"{lo}–{hi}"

    def used(rs, key):
        return "yes" if any(r[key] for r in rs) else "no"

    for (kernel, dtype), rs in sorted(groups.items()):
        spilling = sum(1 for r in rs if r["spill_stores"] + r["spill_loads"] or r["stack"])
        limiters = ", ".join(sorted({r["limiter"] for r in rs}))
        module, name = kernel.split(".")[-2:]
        lines.append(f"| `{name}` ({module}) | {dtype} | {len(rs)} | {span(rs, 'regs')} | {spilling} | "
                     f"{max(r['shared'] for r in rs) / 1024:.1f} | {span(rs, 'warps_per_sm')} | {limiters} | "
                     + " | ".join(used(rs, k) for k in ("wgmma", "mma_sync", "cp_async", "tma")) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as the page docs/performance_sm90.md."""
    rows = report["kernels"]
    lines = [
        "# Triton kernels compiled for an H100 (sm_90), without a GPU", "",
        f"Written by `python -m bench.sm90` (commit `{report['env']['commit']}`, "
        f"Triton {report['env']['triton']}): every kernel that one training iteration of "
        f"`{report['preset']}` at batch {report['batch']} launches "
        "(fast path: bf16 D and G steps, fp32 R1 and path length), at the shapes of those calls, in every "
        "autotune config the pruning keeps, compiled to an sm_90 cubin. Resources are read off the cubin "
        "(`cuobjdump`); occupancy is the theoretical one (no GPU ran anything). Method: the docstring of "
        "`bench/sm90.py`.", "",
        f"Checks (bf16): {'PASS' if report['checks']['ok'] else 'FAIL'} — "
        f"{len(report['checks']['failures'])} failure(s), "
        f"{len(report['checks']['excused'])} named exception(s); "
        f"{len(rows)} compiled kernels.", "",
        *summary(rows), "",
        "Every compiled kernel (a kernel appears once per distinct specialisation: flags, block sizes):", "",
        "| kernel | dtype | config | warps | stages | regs | spill st/ld | shared (KB) | warps/SM | limiter "
        "| wgmma | mma.sync | cp.async | TMA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["kernel"], r["dtype"], json.dumps(r["config"]), r["num_warps"])):
        cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items())
        module, name = r["kernel"].split(".")[-2:]
        lines.append(f"| `{name}` ({module}) | {r['dtype']} | {cfg} | {r['num_warps']} | {r['num_stages']} | "
                     f"{r['regs']} | {r['spill_stores']}/{r['spill_loads']} | "
                     f"{r['shared'] / 1024:.1f} | {r['warps_per_sm']} | {r['limiter']} | {r['wgmma']} | "
                     f"{r['mma_sync']} | {r['cp_async']} | {r['tma']} |")
    if report["checks"]["failures"] or report["checks"]["excused"]:
        lines += ["", "Check failures and named exceptions:", ""]
        lines += [f"- {json.dumps(f)}" for f in report["checks"]["failures"] + report["checks"]["excused"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sm90", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="bench/results/sm90.json")
    p.add_argument("--doc", default=DOC, help="markdown page ('' for none)")
    p.add_argument("--quick", action="store_true",
                   help="bf16 only, per kernel the config with the largest tile; no page")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    launches = capture_launches(*PAPER)
    rows = compile_all(launches, ("bf16",) if args.quick else None, largest_only=args.quick)
    limits = {"registers_per_sm": SM90_REGS, "warps_per_sm": SM90_WARPS, "shared_per_sm": SM90_SHARED_SM,
              "shared_per_block": SM90_SHARED_BLOCK}
    report = {"env": environment(), "preset": PAPER[0], "batch": PAPER[1], "target": "sm_90 (H100)",
              "quick": args.quick, "limits": limits,
              "checks": checks(rows), "kernels": rows}
    write_json(report, args.json)
    if args.doc and not args.quick:
        Path(args.doc).write_text(markdown(report))
    print(f"sm_90: {len(rows)} kernels compiled; bf16 checks {'ok' if report['checks']['ok'] else 'FAILED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
