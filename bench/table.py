"""Render the README's performance table from a ``bench.train`` results JSON.

    python -m bench.table bench/results/train-<device>-<date>.json   # prints markdown
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def _f(v, spec: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v * scale, spec)


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
    if report.get("note"):
        lines.append(f"\n**{report['note']}**")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m bench.table RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
