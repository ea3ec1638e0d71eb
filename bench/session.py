"""Book-keeping of ``bench/gpu_session.sh``: each stage's JSON envelope, and the closing summary.

The shell script runs each stage as ``COMMAND --json FILE [--dry-run]`` under ``timeout``; then

    python -m bench.session finish NAME FILE --rc RC --cap S --wall S --log LOG [--dry-run] [--copy-to DIR]
    python -m bench.session summary DIR --suffix=SUFFIX NAME...   # the files DIR/<NAME><SUFFIX>.json

``finish`` adds the envelope to the stage's JSON (creating it when the stage left none, e.g.
killed before its first write), rewrites it atomically and copies it to ``--copy-to`` ($OUT)::

    stage, status (ok | failed | timed_out | skipped), returncode, wall_s, cap_s, completed
    (the stage's own "complete" flag, when it keeps one), dry_run, note (dry runs: NOT GPU
    figures), log_tail (the stage's last output lines), finished (UTC time)

``summary`` prints one screen: each stage's status, wall time and headline figures, and the
performance targets (:data:`bench.table.TARGETS`) met or missed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

DRY_RUN_NOTE = ("DRY RUN on CPU at toy shapes (Triton interpreter, aot_eager compile): these are NOT GPU "
                "figures")
TIMED_OUT = (124, 137)  # timeout's status when it stopped the command (SIGINT, then SIGKILL)
ENVELOPE = ("stage", "status", "returncode", "wall_s", "cap_s", "completed", "dry_run", "log_tail",
            "finished")


def write_json(report: dict, path: str | os.PathLike) -> Path:
    """Write ``report`` to ``path`` atomically (a temp file, then a rename): a stage killed mid-write
    leaves the previous version, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    return path


def status_of(rc: int | None, skipped: bool = False) -> str:
    if skipped:
        return "skipped"
    return "ok" if rc == 0 else "timed_out" if rc in TIMED_OUT else "failed"


def load(path: Path) -> dict:
    """The JSON object in ``path``, or {} if it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def finish(name: str, path: Path, rc: int | None, cap_s: float, wall_s: float, log: Path | None,
           dry_run: bool, copy_to: Path | None = None, skipped: bool = False, tail: int = 25) -> dict:
    """Add the envelope to the stage's JSON at ``path`` (see the module doc), write it back
    atomically and copy it to ``copy_to``. Returns the document."""
    report = load(path)
    lines = []
    if log is not None and log.is_file():
        lines = log.read_text(errors="replace").splitlines()[-tail:]
    report.update(stage=name, status=status_of(rc, skipped), returncode=rc, wall_s=round(wall_s, 1),
                  cap_s=cap_s, completed=report.get("complete"), dry_run=dry_run, log_tail=lines,
                  finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    if skipped:
        report["reason"] = "not enough of the session's time left for this stage"
    if dry_run:
        report["note"] = DRY_RUN_NOTE
    write_json(report, path)
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy_to / path.name)
    return report


def fmt(v, spec: str) -> str:
    """``v`` formatted with ``spec``, or "-" when it was not measured (None)."""
    return "-" if v is None else format(v, spec)


def headline(report: dict) -> str:
    """The one-line gist of a stage's JSON (empty for stages it does not know)."""
    from bench.table import kind

    k = kind(report)
    if k == "env":
        c, dev = report.get("ceilings") or {}, report.get("device") or {}
        bad = [f"{op}/{dt}" for op, per in (report.get("parity") or {}).items() for dt, r in per.items()
               if not r.get("ok")]
        verdict = "ok" if report.get("parity_ok") else "FAILED " + ",".join(bad) if bad else "incomplete"
        return (f"{dev.get('name')} ({dev.get('sm_count')} SMs, driver {dev.get('driver')}): copy "
                f"{fmt(c.get('copy_gb_per_s'), '.4g')} GB/s, bf16 {fmt(c.get('bf16_matmul_tflops'), '.4g')} "
                f"TFLOP/s; parity {verdict}")
    if k == "cuda_tests":
        return f"pytest -m cuda: {report.get('summary')}"
    stage = report.get("stage")
    if stage == "learning" and report.get("comparison"):
        c = report["comparison"]["g_ema"]
        return (f"fast vs reference G-EMA masks {'PASS' if c['pass'] else 'FAIL'}: class-frequency L1 "
                f"{c['frequency_l1_between']:.3f}, ΔmIoU {c['miou_difference']:.3f} "
                f"({report['config']['kimg']:g} kimg per path)")
    if stage == "metrics" and report.get("extractor"):
        ext, gen = report["extractor"], report.get("generation") or {}
        fid = next(({"name": n, **v} for n, v in report.items() if n.startswith("fid")), {})
        check = report.get("precision_check") or {}
        verdict = ("-" if not check else "skipped" if check.get("skipped")
                   else f"{'ok' if check['ok'] else 'FAILED'} ({100 * check['relative_change']:.2f} %)")
        return (f"extractor {fmt(ext.get('images_per_s_tf32', ext.get('images_per_s_fp32')), '.0f')} img/s, "
                f"G {fmt(gen.get('images_per_s_fast'), '.0f')} img/s; {fid.get('name', 'fid')} "
                f"{fmt((fid.get('with_real_statistics') or {}).get('seconds'), '.0f')} s; "
                f"FID fast vs fp32 {verdict}")
    if stage == "invert":
        return "; ".join(f"{r['name']}: {fmt(r.get('reference_s'), '.1f')} -> "
                         f"{fmt(r.get('ssgan_s'), '.1f')} s "
                         f"(batch {r['config']['batch']}, {r['config']['steps']} steps)"
                         for r in report.get("benchmarks") or [])
    records = {(r.get("name"), (r.get("config") or {}).get("dtype")): r
               for r in report.get("benchmarks") or []}
    if ("local_generators_fwd_bwd", "bf16") in records:
        r = records[("local_generators_fwd_bwd", "bf16")]
        sweep = "; ".join(f"K={c['config']['K']} " + ("out of memory" if "error" in c else
                                                       f"{fmt(c['speedup'], '.1f')}x, "
                                                       f"{fmt(c['memory_ratio'], '.1f')}x")
                          for c in report.get("class_sweep") or [] if c["config"]["dtype"] in ("bf16", "any"))
        return (f"local generators fwd+bwd bf16: {fmt(r['speedup'], '.1f')}x faster, "
                f"{fmt(r['memory_ratio'], '.1f')}x less memory ({len(records)} records)"
                + (f"; by class count (faster, less memory): {sweep}" if sweep else ""))
    if k == "train":
        parts = []
        for (n, _), r in records.items():
            if n != "train_step":
                parts.append(f"{n}: {fmt(r.get('reference_ms'), '.0f')} -> "
                             f"{fmt(r.get('ssgan_ms'), '.0f')} ms "
                             f"({fmt(r.get('speedup'), '.2f')}x, mem {fmt(r.get('memory_ratio'), '.2f')}x, "
                             f"MFU {fmt(None if r.get('mfu') is None else 100 * r['mfu'], '.1f')}%)")
        return "; ".join(parts)
    return ""


def summary(directory: Path, suffix: str, names: Sequence[str]) -> str:
    """The closing screen: each stage in ``names``, its JSON ``<name><suffix>.json`` in ``directory``."""
    from bench.table import check_targets

    lines, reports = [], {}
    for name in names:
        report = load(directory / f"{name}{suffix}.json")
        reports[name] = report
        status = report.get("status", "no JSON")
        wall = f"{fmt(report.get('wall_s'), '.0f')}/{fmt(report.get('cap_s'), '.0f')} s"
        lines.append(f"{name:12s} {status:10s} {wall:>11s}  {headline(report)}"[:160])
    dry = any(r.get("dry_run") for r in reports.values())
    head = [("DRY RUN: " if dry else "") + f"GPU session summary ({directory})", "-" * 78]
    targets = check_targets(reports)
    tail = ["-" * 78, "targets:"] + [f"  {'met   ' if ok else 'MISSED' if ok is False else 'n/a   '} {text}"
                                      for text, ok in targets]
    if dry:
        tail.append(DRY_RUN_NOTE)
    return "\n".join(head + lines + tail)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.session", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("finish")
    f.add_argument("name")
    f.add_argument("json", type=Path)
    f.add_argument("--rc", type=int, default=None)
    f.add_argument("--cap", type=float, required=True)
    f.add_argument("--wall", type=float, default=0.0)
    f.add_argument("--log", type=Path, default=None)
    f.add_argument("--dry-run", action="store_true")
    f.add_argument("--skipped", action="store_true")
    f.add_argument("--copy-to", type=Path, default=None)
    s = sub.add_parser("summary")
    s.add_argument("directory", type=Path)
    s.add_argument("--suffix", required=True, help="file names are <name><suffix>.json")
    s.add_argument("names", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "finish":
        r = finish(args.name, args.json, args.rc, args.cap, args.wall, args.log, args.dry_run, args.copy_to,
                   args.skipped)
        print(f"[{args.name}] {r['status']} after {r['wall_s']:.0f} s (cap {args.cap:.0f} s): {args.json}")
    else:
        print(summary(args.directory, args.suffix, args.names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
