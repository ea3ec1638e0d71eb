"""Render docs/performance.md's tables from the GPU session's JSON files.

    python -m bench.table                      # the newest GPU JSON of each stage in bench/results/
    python -m bench.table FILE.json|DIR ...    # these files (a folder: every *.json in it)

Markdown, in this order: the machine and its measured ceilings, the performance targets (met or
missed), the kernel microbenchmarks, the training step, its per-phase breakdown and compile
times, the top CUDA kernels of one amortised training window, the parity errors and the
``pytest -m cuda`` summary. Files written by a dry run are skipped when scanning bench/results/
and, when given explicitly, rendered under a banner that says they are not GPU figures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("d", "r1", "g", "pl", "ema")
PHASE_NAMES = {"d": "D step", "r1": "R1 (lazy)", "g": "G step", "pl": "path length (lazy)", "ema": "G-EMA"}

# (what, stage kind, record name, dtype, field, threshold, "min" | "max"): the issue's targets.
TARGETS = (
    ("local generators + fusion fwd+bwd (bf16) >= 10x the reference", "kernels", "local_generators_fwd_bwd",
     "bf16", "speedup", 10.0, "min"),
    ("local generators + fusion fwd+bwd (bf16) at <= 0.2x its memory (memory ratio >= 5)", "kernels",
     "local_generators_fwd_bwd", "bf16", "memory_ratio", 5.0, "min"),
    ("training step 256 px batch 16 >= 4x the reference eager path", "train", "train_step_256", None,
     "speedup", 4.0, "min"),
    ("training step 256 px at <= 0.5x the reference's memory (memory ratio >= 2)", "train", "train_step_256",
     None, "memory_ratio", 2.0, "min"),
    ("training step 256 px >= 30 % bf16 model-FLOPs utilisation", "train", "train_step_256", None, "mfu",
     0.30, "min"),
)


def kind(report: dict) -> str | None:
    """Which stage wrote ``report``: env, kernels, train, cuda_tests, or None (unknown)."""
    if "ceilings" in report and "parity" in report:
        return "env"
    if "counts" in report and "summary" in report:
        return "cuda_tests"
    names = [r.get("name", "") for r in report.get("benchmarks") or []]
    if any(n.startswith("train_step") for n in names):
        return "train"
    if any(n.startswith(("local_generators", "grouped_mlp", "fusion")) for n in names):
        return "kernels"
    return None


def _f(v, spec: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v * scale, spec)


def _record(reports: Sequence[dict], stage_kind: str, name: str, dtype: str | None) -> dict | None:
    for report in reports:
        if kind(report) == stage_kind:
            for r in report.get("benchmarks") or []:
                if r.get("name") == name and (dtype is None or (r.get("config") or {}).get("dtype") == dtype):
                    return r
    return None


def check_targets(reports: dict[str, dict] | Sequence[dict]) -> list[tuple[str, bool | None]]:
    """[(what = value, met?)] for :data:`TARGETS` (None: not measured)."""
    found = list(reports.values()) if isinstance(reports, dict) else list(reports)
    out = []
    for what, stage_kind, name, dtype, field, threshold, sense in TARGETS:
        r = _record(found, stage_kind, name, dtype)
        v = None if r is None else r.get(field)
        if v is None:
            out.append((f"{what}: not measured", None))
            continue
        shown = f"{100 * v:.1f} %" if field == "mfu" else f"{v:.2f}x"
        out.append((f"{what}: {shown}", v >= threshold if sense == "min" else v <= threshold))
    return out


def render(report: dict) -> str:
    """A markdown table of the train_step_<res> entries of a bench.train report."""
    rows = [r for r in report["benchmarks"] if r["name"] != "train_step"]
    lines = [f"Measured on {report.get('device')} (torch {report.get('torch')}, triton "
             f"{report.get('triton')}, commit {str(report.get('commit'))[:12]}, {report.get('date')}); "
             f"{report.get('data', '')}.", "",
             "| config | batch | reference ms/it | ssgan ms/it | speedup | ssgan img/s | ssgan s/kimg "
             "| reference MiB | ssgan MiB | MFU reference | MFU ssgan |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["config"]
        lines.append(
            f"| {c.get('preset') or r['name']} | {c.get('batch')} | {_f(r['reference_ms'], '.1f')} | "
            f"{_f(r['ssgan_ms'], '.1f')} | {_f(r['speedup'], '.2f')}× | {_f(r['images_per_s'], '.1f')} | "
            f"{_f(r['sec_per_kimg'], '.1f')} | {_f(r['reference_peak_mib'], '.0f')} | "
            f"{_f(r['ssgan_peak_mib'], '.0f')} | {_f(r.get('reference_mfu'), '.1f', 100)}% | "
            f"{_f(r['mfu'], '.1f', 100)}% |")
    if report.get("note") and not report.get("dry_run"):
        lines.append(f"\n**{report['note']}**")
    return "\n".join(lines)


def render_phases(report: dict) -> str:
    """Per-phase breakdown (ms per call and per iteration, lazy phases amortised) and compile times."""
    lines = []
    for r in report["benchmarks"]:
        if r["name"] == "train_step" or not r.get("phases"):
            continue
        p, c = r["phases"], r.get("compile") or {}
        lines += [f"Per-phase breakdown, {r['name']} (ms; per iteration = amortised over the window):", "",
                  "| phase | reference ms/call | reference ms/it | ssgan ms/call | ssgan ms/it | ssgan first "
                  "call ms |", "|---|---|---|---|---|---|"]
        for ph in PHASES:
            ref, fast = (p.get("reference") or {}).get(ph) or {}, (p.get("ssgan") or {}).get(ph) or {}
            first = ((c.get("ssgan") or {}).get("first_iteration_ms") or {}).get(ph)
            lines.append(f"| {PHASE_NAMES[ph]} | {_f(ref.get('ms_per_call'), '.2f')} | "
                         f"{_f(ref.get('ms_per_iteration'), '.2f')} | {_f(fast.get('ms_per_call'), '.2f')} | "
                         f"{_f(fast.get('ms_per_iteration'), '.2f')} | {_f(first, '.0f')} |")
        comp = [f"{path} {_f((c.get(path) or {}).get('compile_and_tune_s'), '.1f')} s"
                for path in ("reference", "ssgan")]
        lines += ["", f"Compilation and tuning (first iteration minus steady state): {', '.join(comp)}.", ""]
    return "\n".join(lines)


def render_profile(report: dict) -> str:
    lines = []
    for r in report["benchmarks"]:
        prof = r.get("ssgan_profile")
        if r["name"] == "train_step" or not prof:
            continue
        total = _f(prof.get("total_ms"), ".1f")
        lines += [f"Top {len(prof['kernels'])} {prof['unit']} of the fast path, {r['name']}, one amortised "
                  f"window of {prof.get('window_iterations')} iterations ({total} ms in all):", "",
                  "| kernel | calls | total ms | % | mean µs |", "|---|---|---|---|---|"]
        lines += [f"| `{k['name'][:90]}` | {k['calls']} | {_f(k['total_ms'], '.2f')} | {_f(k['pct'], '.1f')} "
                  f"| {_f(k['mean_us'], '.1f')} |" for k in prof["kernels"]]
        lines.append("")
    return "\n".join(lines)


def render_kernels(report: dict) -> str:
    lines = ["| benchmark | dtype | reference ms | ssgan ms | speedup | reference MiB | ssgan MiB | memory "
             "ratio | TFLOP/s | % of peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["benchmarks"]:
        lines.append(f"| {r['name']} | {r['config']['dtype']} | {_f(r['reference_ms'], '.3f')} | "
                     f"{_f(r['ssgan_ms'], '.3f')} | {_f(r['speedup'], '.2f')}× | "
                     f"{_f(r['reference_peak_mib'], '.0f')} | {_f(r['ssgan_peak_mib'], '.0f')} | "
                     f"{_f(r['memory_ratio'], '.2f')}× | {_f(r['ssgan_tflops'], '.1f')} | "
                     f"{_f(r['pct_of_peak'], '.1f')} |")
    if report["benchmarks"]:
        c = report["benchmarks"][0]["config"]
        lines.append(f"\nShapes B={c['B']} K={c['K']} L={c['L']} C={c['C']} F={c['F']} P={c['S']}²; peak "
                     f"{report.get('peak_tflops', {}).get('source')}.")
    return "\n".join(lines)


def render_env(report: dict) -> str:
    d, c = report.get("device") or {}, report.get("ceilings") or {}
    lines = [f"Machine: {d.get('name')} (sm {d.get('capability')}, {d.get('sm_count')} SMs, "
             f"{_f(d.get('memory_gib'), '.0f')} GiB, driver {d.get('driver')}); Python {d.get('python')}, "
             f"torch {d.get('torch')}, Triton {d.get('triton')}, numpy {d.get('numpy')}, commit "
             f"{str(d.get('commit'))[:12]}. Measured ceilings: copy {_f(c.get('copy_gb_per_s'), '.4g')} GB/s "
             f"(read + write), bf16 matmul {_f(c.get('bf16_matmul_tflops'), '.4g')} TFLOP/s.", "",
             "Parity against float64 (max relative error of the outputs / of the gradients; bound):", "",
             "| op | dtype | fwd | bwd | bound | ok |", "|---|---|---|---|---|---|"]
    for op, per in (report.get("parity") or {}).items():
        for dt, r in per.items():
            if "error" in r:
                lines.append(f"| {op} | {dt} | – | – | – | {r['error']} |")
                continue
            lines.append(f"| {op} | {dt} | {_f(max(r['fwd']), '.1e')} | {_f(max(r['bwd']), '.1e')} | "
                         f"{_f(r['bound'], '.0e')} | {'yes' if r['ok'] else '**no**'} |")
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[dict], str]] = {
    "env": render_env, "kernels": render_kernels,
    "train": lambda r: "\n\n".join(s for s in (render(r), render_phases(r), render_profile(r)) if s),
    "cuda_tests": lambda r: f"`pytest -m cuda`: {r.get('summary')}.",
}
ORDER = ("env", "kernels", "train", "cuda_tests")


def render_all(reports: Sequence[dict]) -> str:
    """The whole performance section from a set of stage reports."""
    dry = any(r.get("dry_run") for r in reports)
    out = ["**DRY RUN on CPU at toy shapes: NOT GPU figures.**", ""] if dry else []
    out += ["Targets:", ""] + [f"- {'met' if ok else 'MISSED' if ok is False else 'n/a'}: {text}"
                               for text, ok in check_targets(reports)]
    for k in ORDER:
        for r in reports:
            if kind(r) == k:
                stage = f" (stage {r['stage']}: {r.get('status')})" if "stage" in r else ""
                out += ["", f"#### {k}{stage}", "", SECTIONS[k](r)]
    return "\n".join(out)


def newest_gpu_reports(directory: Path = RESULTS) -> list[dict]:
    """The newest non-dry-run report of each stage in ``directory`` (by its ``finished`` time)."""
    best: dict[str, dict] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        key = report.get("stage") or kind(report) if isinstance(report, dict) else None
        if key is None or report.get("dry_run"):
            continue
        if key not in best or str(report.get("finished", report.get("date"))) >= str(
                best[key].get("finished", best[key].get("date"))):
            best[key] = report
    return list(best.values())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a.startswith("-") for a in argv):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    reports: list[dict] = []
    for arg in argv:
        paths = sorted(Path(arg).glob("*.json")) if Path(arg).is_dir() else [Path(arg)]
        for path in paths:
            with open(path, encoding="utf-8") as f:
                reports.append(json.load(f))
    if not argv:
        reports = newest_gpu_reports()
    if not reports:
        print(f"no GPU results in {RESULTS}: run bash bench/gpu_session.sh on a GPU first", file=sys.stderr)
        return 1
    print(render_all(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
