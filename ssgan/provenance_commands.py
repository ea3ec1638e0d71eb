"""``ssgan detect FILE|DIR …``: what each picture says about where it came from (its XMP record,
its invisible watermark) and a verdict (:mod:`ssgan.provenance.detect`; docs/provenance.md).
Registered by :func:`add_parser` (see :mod:`ssgan.cli`).

Exit status: 0 when every file is marked, 1 when any is not, 2 when any could not be read (one
``ssgan: error:`` line each, naming the file and the fix; the others are still reported)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssgan import cliargs as A
from ssgan.provenance import detect


def _line(report: detect.Report) -> str:
    meta = report.metadata
    found = ", ".join(f"{k} {meta[k]}" for k in ("source_type", "action", "software", "generator_digest",
                                                 "watermark", "key_id") if k in meta) or "none"
    mark = (f"payload ok in {report.frames_marked}/{report.frames} frame(s), key id {report.key_id}"
            if report.watermarked else f"no payload in {report.frames} frame(s)")
    return (f"{report.path}: {report.verdict}\n  metadata: {found}\n"
            f"  watermark: {mark}, pilot confidence {report.confidence:.2f}\n  C2PA: {_c2pa(report)}")


def _c2pa(report: detect.Report) -> str:
    """The manifest's validation in a few words."""
    m = report.c2pa
    if m is None:
        return "no manifest" if report.c2pa_checked else "not checked (pip install 'ssgan[c2pa]')"
    if not m["valid"]:
        return "INVALID manifest: " + "; ".join(m.get("errors") or ["failed validation"])
    who = f"{'trusted' if m['trusted'] else 'untrusted'} signer {m.get('signer') or '?'}"
    return f"valid, {who}, actions {', '.join(m.get('actions') or []) or 'none'}"


def cmd_detect(args: argparse.Namespace) -> int:
    reports, errors = [], []
    paths = detect.files(args.paths)
    if not paths:
        raise A.CLIError(f"no image files under {' '.join(args.paths)}; pass PNG, JPEG, WebP or GIF files "
                         f"or folders holding them")
    for path in paths:
        try:
            reports.append(detect.inspect_file(path))
        except detect.UnreadableError as e:
            errors.append(str(e))
            print(f"ssgan: error: {e}", file=sys.stderr)
            continue
        if args.out != "-":
            print(_line(reports[-1]))
    if args.out:
        text = json.dumps({"files": [r.to_dict() for r in reports], "unreadable": errors}, indent=2) + "\n"
        if args.out == "-":
            sys.stdout.write(text)
        else:
            out = Path(args.out)
            if not out.parent.is_dir():
                raise A.CLIError(f"--out {out}: folder {out.parent} does not exist; create it or pick "
                                 f"another")
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_text(text)
            tmp.replace(out)
            print(f"wrote {out}")
    marked = sum(r.marked for r in reports)
    print(f"{marked} of {len(reports)} file(s) marked" + (f"; {len(errors)} unreadable" if errors else ""),
          file=sys.stderr)
    return 2 if errors else 0 if marked == len(reports) else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``detect``."""
    q = sub.add_parser("detect", help="check pictures for ssgan's provenance record and watermark",
                       description="Per file: the XMP provenance record (source type, action, software, "
                                   "generator digest), the invisible watermark's payload (key id) and the "
                                   "pilot's confidence, and a verdict. Exit 0: every file marked; 1: some "
                                   "not; 2: some unreadable.")
    q.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files and/or folders (searched recursively)")
    A.add_out(q, "also write the reports as JSON to this file ('-': print the JSON instead of the text; "
                 "default: text only)")
    q.set_defaults(func=cmd_detect)
