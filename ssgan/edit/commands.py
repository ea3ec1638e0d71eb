"""The editing subcommands of ``ssgan``: ``generate``, ``mix``, ``components``, ``interpolate`` (random
samples and their codes, :mod:`ssgan.edit.editing`), ``invert`` (real photographs,
:mod:`ssgan.edit.inversion`), ``direction`` and ``edit`` (attribute directions,
:mod:`ssgan.edit.directions`). Registered by :func:`add_parser` (see :mod:`ssgan.cli`)."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssgan import cliargs as A
from ssgan import visualize as V
from ssgan.checkpoint import inspect_checkpoint
from ssgan.classes import ClassInfo
from ssgan.data.base import DatasetError
from ssgan.edit import editing as E
from ssgan.edit.encoder import EncoderError
from ssgan.edit.perceptual import PerceptualWeightsError
from ssgan.model.compiled import DEFAULTS as COMPILED_BY_DEFAULT
from ssgan.provenance import COMPOSITE, Provenance, save_image
from ssgan.provenance.c2pa_sign import C2PASigner

#: Errors of these commands that are bad input, reported as one line (see ssgan.cli).
ERRORS: tuple[type[Exception], ...] = (DatasetError, PerceptualWeightsError, EncoderError)


def _legend(image: np.ndarray, classes: ClassInfo) -> np.ndarray:
    return V.with_legend(image, classes.names, V.palette(classes.k, classes.colors), classes.transparent)


def _mean(G, args: argparse.Namespace) -> torch.Tensor | None:
    return E.mean_w(G, args.seed, 4096) if args.truncation < 1 else None


def _load_latent(path: str, G) -> torch.Tensor:
    p = Path(path)
    array = A.load_npy(p, "latent")
    try:
        return E.as_latent(array, G, f"latent {p}")
    except ValueError as e:
        raise A.CLIError(str(e)) from None


def _one_latent(args: argparse.Namespace, G) -> torch.Tensor:
    if args.latent:
        return _load_latent(args.latent, G)[:1]
    return E.sample_latents(G, 1, args.seed, args.truncation, _mean(G, args))


# ----- random samples and their codes ---------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    if args.count < 1 or args.batch < 1:
        raise A.CLIError("-n/--count and --batch must be >= 1")
    signer = A.c2pa_signer(args)
    G, classes = A.load_generator(args)
    A.prepare_inference(args, G)
    prov = A.provenance(args, G, "generate")
    out = Path(args.outdir)
    rgbs, segs = [], []
    with tqdm(total=args.count, desc="generate", unit="img", disable=args.quiet) as bar:
        for i, s in enumerate(E.generate(G, args.count, args.seed, args.truncation, batch=args.batch,
                                         mean=_mean(G, args), progress=bar.update,
                                         colors=V.palette(classes.k, classes.colors))):
            save_image(s.rgb, out / "img" / f"{i:06d}.png", prov, c2pa=signer)
            if s.seg is not None:  # a StyleGAN2 generator draws no masks
                save_image(s.seg, out / "mask" / f"{i:06d}.png", prov.without_watermark(), c2pa=signer)
            A.save_npy(s.latent, out / "latent" / f"{i:06d}.npy")
            if i < args.grid_max:
                rgbs.append(s.rgb)
                segs.append(s.seg)
    # Grid: rows of images, each followed by the row of their masks (when there are masks).
    ncol = min(len(rgbs), 8)
    tiles = []
    for r in range(0, len(rgbs), ncol):
        row_rgb, row_seg = rgbs[r:r + ncol], segs[r:r + ncol]
        blank = [np.full_like(rgbs[0], 255)] * (ncol - len(row_rgb))
        tiles += row_rgb + blank + (row_seg + blank if row_seg[0] is not None else [])
    figure = V.grid(np.stack(tiles), ncol=ncol)
    save_image(_legend(figure, classes) if segs[0] is not None else figure, out / "grid.png", prov,
               c2pa=signer)
    print(f"wrote {args.count} samples to {out}")


def cmd_mix(args: argparse.Namespace) -> None:
    signer = A.c2pa_signer(args)
    G, info = A.load_generator(args)
    A.require_semantic(G.config, args.ckpt, "ssgan mix (region mix)")
    A.prepare_inference(args, G)
    classes = info.indices(A.classes_text(args.classes))
    src = _load_latent(args.source, G)
    ref = _load_latent(args.reference, G)
    try:
        res = E.mix(G, src, ref, classes, args.part, colors=V.palette(info.k, info.colors))
    except ValueError as e:
        raise A.CLIError(str(e)) from None
    out = Path(args.outdir)
    n = res["result"].shape[0]
    prov = A.provenance(args, G, "mix")
    figure = _legend(np.concatenate([E.mix_figure(res, i) for i in range(n)], 0), info)
    save_image(figure, out / "mix.png", prov, c2pa=signer)
    save_image(V.grid(res["diff"], ncol=n), out / "diff.png", prov.without_watermark(), c2pa=signer)
    latent = res["latent"]
    A.save_npy(latent[0] if n == 1 else latent, out / "result.npy")
    print(f"mean |result - source| (0-255 levels) inside classes {','.join(info.names[c] for c in classes)}: "
          f"{res['inside']:.3f}; outside: {res['outside']:.3f}")
    written = [out / "mix.png", out / "diff.png", out / "result.npy"]
    if args.diff:
        written.append(_write_locality(G, src.expand(n, -1, -1) if src.shape[0] < n else src,
                                       torch.as_tensor(res["latent"], device=src.device), classes,
                                       out / "mix_diff.png", args.radius, prov, signer))
    print("wrote " + ", ".join(map(str, written)))


def _write_locality(G, before: torch.Tensor, after: torch.Tensor, classes: Sequence[int], path: Path,
                    radius: int, prov: Provenance, signer: C2PASigner | None = None) -> Path:
    """``--diff``: before | after | |ΔRGB| heat map | the classes' dilated masks, one row per edit
    (:func:`ssgan.edit.locality.locality_figure`), and the share of the change inside them."""
    from ssgan.edit.locality import locality_figure

    figure, shares = locality_figure(E.render(G, before), E.render(G, after), classes, radius)
    save_image(figure, path, prov, c2pa=signer)
    print(f"share of |result - source| inside the classes' masks (union before/after, dilated {radius} px): "
          + ", ".join("-" if s != s else f"{s:.3f}" for s in shares))
    return path


def cmd_components(args: argparse.Namespace) -> None:
    signer = A.c2pa_signer(args)
    G, classes = A.load_generator(args)
    A.require_semantic(G.config, args.ckpt, "ssgan components")
    figure = _legend(E.components(G, _one_latent(args, G), V.palette(classes.k, classes.colors)), classes)
    path = save_image(figure, Path(args.outdir) / "components.png", A.provenance(args, G, "components"),
                      c2pa=signer)
    print(f"wrote {path}")


def write_video(path: Path | None, frames: Iterable[np.ndarray], args: argparse.Namespace, prov: Provenance,
                signer: C2PASigner | None, total: int) -> None:
    """``--video``: ``total`` ``frames`` as an mp4 (:func:`ssgan.cliargs.write_video`), signed by
    ``signer``; nothing without ``path``."""
    if path is not None:
        A.write_video(path, frames, args, prov, total)
        if signer is not None:
            signer.sign(path, prov, None)


def cmd_interpolate(args: argparse.Namespace) -> None:
    video, signer = A.video_path(args), A.c2pa_signer(args)
    G, classes = A.load_generator(args)
    A.require_semantic(G.config, args.ckpt, "ssgan interpolate (one class's codes)")
    text = A.classes_text(args.classes)
    picked = classes.indices(text, "--classes")
    if len(picked) != 1:
        raise A.CLIError(f"--classes takes one class here, not {text!r}")
    if args.frames < 2:
        raise A.CLIError("--frames must be >= 2")
    latent = _one_latent(args, G)
    out = Path(args.outdir)
    with tqdm(total=args.frames, desc="interpolate", unit="frame", disable=args.quiet) as bar:
        frames = E.interpolate(G, latent, picked[0], args.part, args.frames, seed=args.seed + 1,
                               truncation=args.truncation, mean=_mean(G, args), progress=bar.update,
                               colors=V.palette(classes.k, classes.colors))
    prov = A.provenance(args, G, "interpolate")
    for i, frame in enumerate(frames):
        save_image(frame, out / f"frame_{i:03d}.png", prov, c2pa=signer)
    gif = save_image(np.stack(frames), out / "interpolation.gif", prov, c2pa=signer, frame_ms=80)
    write_video(video, frames, args, prov, signer, len(frames))
    print(f"wrote {len(frames)} frames and {gif}" + (f", {video}" if video else ""))


# ----- real photographs and attribute directions ------------------------------------------------------
def cmd_invert(args: argparse.Namespace) -> int | None:
    from ssgan.edit.inversion import InversionConfig, invert_photos
    from ssgan.edit.perceptual import load_perceptual
    from ssgan.edit.photos import load_photos

    if args.batch < 1:
        raise A.CLIError("--batch must be >= 1")
    signer = A.c2pa_signer(args)
    try:
        cfg = InversionConfig(steps=args.steps, lr=args.lr, lambda_percept=args.lambda_percept,
                              lambda_mse=args.lambda_mse, lambda_mean=args.lambda_mean,
                              lambda_seg=args.lambda_seg, finetune_steps=args.finetune_steps,
                              finetune_lr=args.finetune_lr, seed=args.seed, precision=args.precision,
                              compile=args.compile)
    except ValueError as e:
        raise A.CLIError(str(e)) from None
    G, _ = A.load_generator(args)
    A.prepare_inference(args)
    if args.labels:
        A.require_semantic(G.config, args.ckpt, "mask-guided inversion (--labels)")
    encoder = None
    if args.encoder:
        from ssgan.edit.encoder import load_encoder

        encoder, _ = load_encoder(args.encoder, G)
    photos = load_photos(args.images, G.config.size, G.config.seg_dim, args.labels, skip_bad=True)
    perceptual = load_perceptual(args.lpips_weights)
    for line in photos.errors:  # left out; the others are inverted, and the status says so
        print(f"ssgan: error: {' '.join(line.split())}", file=sys.stderr)
    for note in photos.notes:
        print(note, file=sys.stderr)
    n = len(photos.stems)
    start = ("the mean latent" if encoder is None
             else f"the encoder {args.encoder} ({encoder.cfg.iters} passes)")
    print(f"inverting {n} image(s), {args.batch} at a time, from {start}: {cfg.steps} steps, lr {cfg.lr}; "
          f"perceptual loss: "
          f"{perceptual.name}; mask guidance: {'on' if photos.labels is not None else 'off (no --labels)'}; "
          f"generator tuning: {cfg.finetune_steps} steps")
    metrics = invert_photos(G, photos, args.outdir, cfg, perceptual, args.batch, progress=not args.quiet,
                            source=str(args.ckpt), encoder=encoder,
                            encoder_source=None if encoder is None else str(args.encoder),
                            prov=A.provenance(args, None, "invert", COMPOSITE), c2pa=signer)
    print("mean " + ", ".join(f"{k} {v:.4g}" for k, v in metrics["mean"].items()))
    out = Path(args.outdir)
    print(f"wrote {out / 'latent'}, {out / 'recon'}, {out / 'metrics.json'}"
          + (f", {out / 'generator.safetensors'}" if cfg.finetune_steps else ""))
    if photos.errors:
        print(f"ssgan: {len(photos.errors)} image(s) left out (see the errors above)", file=sys.stderr)
        return 2
    return None


_TRUE, _FALSE = ("1", "true", "yes", "y"), ("0", "false", "no", "n", "-1")


def attribute_labels(path: Path, attribute: str) -> dict[str, int]:
    """stem -> 0/1 from a CSV whose first column names the latent (file stem) and one column is
    ``attribute`` (1/0, true/false, yes/no; -1 counts as 0)."""
    if not path.is_file():
        raise A.CLIError(f"attribute file {path} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise A.CLIError(f"{path} needs a header row (name, attributes...) and one row per latent")
    header = [h.strip() for h in rows[0]]
    if attribute not in header[1:]:
        raise A.CLIError(f"{path} has no column {attribute!r}; its attributes: "
                         f"{', '.join(header[1:]) or 'none'}")
    col = header.index(attribute)
    labels = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        value = row[col].strip().lower() if col < len(row) else ""
        if value not in _TRUE + _FALSE:
            raise A.CLIError(f"{path} line {line}: {attribute} = {value!r}; use 1/0, true/false or yes/no")
        labels[Path(row[0].strip()).stem] = int(value in _TRUE)
    return labels


def cmd_direction(args: argparse.Namespace) -> None:
    from ssgan.edit.directions import fit_direction

    info = inspect_checkpoint(args.ckpt)
    cfg = info["config"]
    names = ClassInfo.from_meta(info["meta"], cfg.seg_dim, cfg.transparent_dims)
    if args.classes is not None:
        A.require_semantic(cfg, args.ckpt, "--classes (per-class codes)")
    classes = None if args.classes is None else names.indices(A.classes_text(args.classes))
    labels = attribute_labels(Path(args.attributes), args.attribute)
    folder = Path(args.latents)
    if not folder.is_dir():
        raise A.CLIError(f"latent folder {folder} does not exist")
    latents, values = [], []
    for stem, value in sorted(labels.items()):
        p = folder / f"{stem}.npy"
        if not p.is_file():
            raise A.CLIError(f"{args.attributes} lists {stem!r} but {p} does not exist")
        latents.append(A.load_npy(p, "latent", (cfg.n_latent, cfg.style_dim)))
        values.append(value)
    try:
        direction, stats = fit_direction(np.stack(latents), values, cfg, classes)
    except ValueError as e:
        raise A.CLIError(f"{args.attributes}: {e}") from None
    A.save_npy(direction, Path(args.out))
    where = "every code" if classes is None else f"the codes of classes {','.join(map(str, classes))}"
    print(f"{args.attribute}: fitted on {stats['samples']} latents ({stats['positives']} positive), {where}; "
          f"training accuracy {stats['train_accuracy']:.3f}")
    print(f"wrote {args.out}")


def _strengths(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise A.CLIError(f"--strength must be comma-separated numbers, e.g. -3,0,3, not {text!r}") from None
    if not values:
        raise A.CLIError("--strength lists no value")
    return values


def cmd_edit(args: argparse.Namespace) -> None:
    from ssgan.edit.directions import edit

    video, signer = A.video_path(args), A.c2pa_signer(args)
    G, names = A.load_generator(args)
    cfg = G.config
    if args.classes is not None or args.diff:
        A.require_semantic(cfg, args.ckpt, "--classes and --diff (class codes, masks)")
    classes = None if args.classes is None else names.indices(A.classes_text(args.classes))
    latent = _load_latent(args.latent, G)[:1]
    direction = A.load_npy(args.direction, "direction", (cfg.n_latent, cfg.style_dim))
    strengths = _strengths(args.strength)
    res = edit(G, latent, direction, strengths, classes)
    out = Path(args.outdir)
    prov = A.provenance(args, G, "edit", COMPOSITE)  # its latent is usually a photo's (invert)
    for i, (frame, code) in enumerate(zip(res["frames"], res["latents"])):
        save_image(frame, out / f"frame_{i:03d}.png", prov, c2pa=signer)
        A.save_npy(code, out / f"latent_{i:03d}.npy")
    save_image(V.grid(np.stack(res["frames"]), ncol=1), out / "edit.png", prov, c2pa=signer)
    save_image(V.grid(res["diff"], ncol=len(strengths)), out / "diff.png", prov.without_watermark(),
               c2pa=signer)
    write_video(video, res["frames"], args, prov, signer, len(strengths))
    where = "all classes" if res["classes"] is None else f"classes {','.join(map(str, res['classes']))}"
    print(f"edited inside {where}; mean |frame - input| (0-255 levels) inside / outside:")
    for s, a, b in zip(strengths, res["inside"], res["outside"]):
        print(f"  strength {s:+g}: {a:.3f} / {b:.3f}")
    extra = ""
    if args.diff:
        region = list(range(cfg.seg_dim)) if res["classes"] is None else list(res["classes"])
        codes = torch.as_tensor(res["latents"], device=latent.device)
        path = _write_locality(G, latent.expand(codes.shape[0], -1, -1), codes, region, out / "edit_diff.png",
                               args.radius, prov, signer)
        extra = f", {path}"
    extra += f", {video}" if video else ""
    print(f"wrote {len(strengths)} frames, {out / 'edit.png'}, {out / 'diff.png'}{extra}")


# ----- parsers --------------------------------------------------------------------------------------
PART_HELP = "which codes of the classes: shape, texture or both"


def _add_diff(q: argparse.ArgumentParser, name: str) -> None:
    q.add_argument("--diff", action="store_true",
                   help=f"also write {name}: before | after | |difference| | the classes' masks dilated by "
                        f"--radius px, and print the share of the change inside them (edit locality); "
                        f"default: only diff.png")
    q.add_argument("--radius", type=int, default=2, help="dilation of the masks for --diff, in pixels")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register generate, mix, components and interpolate, then :func:`_add_photo_parsers`'s."""
    q = sub.add_parser("generate", help="random samples: images, masks, compact W+ latents, grid")
    A.add_common(q)
    A.add_count(q, "number of samples", default=16)
    q.add_argument("--batch", type=int, default=8, help="samples rendered together")
    q.add_argument("--grid-max", type=int, default=64, help="samples shown in grid.png")
    A.add_watermark(q)
    A.add_c2pa(q)
    A.add_compile(q, COMPILED_BY_DEFAULT["generate"])
    q.set_defaults(func=cmd_generate)

    q = sub.add_parser("mix", help="copy some classes' codes from a reference latent into a source")
    A.add_common(q)
    q.add_argument("--source", required=True, metavar="FILE", help="source latent .npy (n_latent, D)")
    q.add_argument("--reference", required=True, metavar="FILE", help="reference latent .npy (n_latent, D)")
    A.add_classes(q, "the classes whose codes come from the reference, e.g. hair eyes or 7,2", required=True)
    q.add_argument("--part", choices=("shape", "texture", "all"), default="all", help=PART_HELP)
    _add_diff(q, "mix_diff.png")
    A.add_watermark(q)
    A.add_c2pa(q)
    A.add_compile(q, COMPILED_BY_DEFAULT["mix"])
    q.set_defaults(func=cmd_mix)

    q = sub.add_parser("components", help="the image built up class by class, with depths and masks")
    A.add_common(q)
    q.add_argument("--latent", metavar="FILE", help="latent .npy (default: a sample drawn with --seed)")
    A.add_watermark(q)
    A.add_c2pa(q)
    q.set_defaults(func=cmd_components)

    q = sub.add_parser("interpolate", help="move one class's codes towards a random target",
                       description="Move one class's shape/texture codes linearly from the source latent "
                                   "to those of a random target (drawn with --seed + 1, so it differs "
                                   "from a source drawn with --seed); all other codes stay fixed.")
    A.add_common(q)
    A.add_classes(q, "the one class that moves, e.g. hair or 7", required=True, aliases=("--class",))
    q.add_argument("--part", choices=("shape", "texture", "all"), default="all", help=PART_HELP)
    q.add_argument("--latent", metavar="FILE", help="latent .npy (default: a sample drawn with --seed)")
    q.add_argument("--frames", type=int, default=16, help="frames from source to target, both included")
    A.add_watermark(q)
    A.add_video(q, fps=12.5)
    A.add_c2pa(q)
    q.set_defaults(func=cmd_interpolate)

    _add_photo_parsers(sub)


def _add_photo_parsers(sub: argparse._SubParsersAction) -> None:
    """Register invert, direction and edit (the commands for real photographs and directions)."""
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
    A.add_checkpoint(q)
    q.add_argument("--images", nargs="+", required=True, metavar="PATH",
                   help="image files and/or folders of images (resized to the model's size with a note)")
    A.add_outdir(q)
    q.add_argument("--labels", metavar="DIR",
                   help="folder of <stem>.png label maps (class indices): mask guidance and mask metrics "
                        "(default: none, no mask guidance)")
    q.add_argument("--steps", type=int, default=400,
                   help="latent optimisation steps (with --encoder: after it; 0 = the encoder's codes)")
    q.add_argument("--encoder", metavar="FILE",
                   help="start from this encoder's codes (from 'ssgan encoder train' for CKPT's generator) "
                        "instead of the mean latent (default: none)")
    q.add_argument("--lr", type=float, default=0.1, help="Adam lr of the codes")
    q.add_argument("--lambda-percept", type=float, default=1.0, help="weight of the perceptual distance")
    q.add_argument("--lambda-mse", type=float, default=0.1, help="weight of the pixel MSE")
    q.add_argument("--lambda-mean", type=float, default=1.0, help="weight of the distance to the mean latent")
    q.add_argument("--lambda-seg", type=float, default=0.1,
                   help="weight of the mask-guidance term, used with --labels")
    q.add_argument("--finetune-steps", type=int, default=0,
                   help="generator tuning steps after the search, 0 = none (official: 200-400 suggested)")
    q.add_argument("--finetune-lr", type=float, default=1e-4, help="tuning Adam lr")
    q.add_argument("--batch", type=int, default=8, help="images optimised together")
    q.add_argument("--lpips-weights", nargs="+", metavar="FILE",
                   help="LPIPS-VGG weights: NVlabs' TorchScript vgg16.pt, or torchvision's VGG16 state dict "
                        "(vgg16-397923af.pth) [plus the lpips package's lpips/weights/v0.1/vgg.pth; taken "
                        "from an installed lpips package when omitted]. Default: MS-SSIM, no weights")
    q.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the generator under bf16 autocast (GPU)")
    A.add_seed(q, help="seed of the mean latent's z")
    A.add_compile(q, COMPILED_BY_DEFAULT["invert"], "the search step's forward (generator and losses)")
    A.add_device(q)
    A.add_quiet(q)
    A.add_watermark(q)
    A.add_c2pa(q)
    q.set_defaults(func=cmd_invert)

    q = sub.add_parser(
        "direction", help="fit an attribute direction (InterFaceGAN) on labelled latents",
        description="Logistic regression on the chosen codes of latents with 0/1 labels; writes the unit "
                    "normal of the boundary as an (n_latent, D) .npy, zero outside the chosen codes.")
    A.add_checkpoint(q, help="checkpoint (for the latent layout and class names)")
    q.add_argument("--latents", required=True, metavar="DIR", help="folder of <name>.npy latents")
    A.add_argument(q, "--attributes", deprecated=("--labels",), dest="attributes", required=True,
                   metavar="CSV", help="CSV: header 'name,<attribute>,...', a row per latent (name = file "
                                       "stem), values 1/0")
    q.add_argument("--attribute", required=True, help="the CSV column to fit")
    A.add_out(q, "the direction .npy to write", required=True)
    A.add_classes(q, "fit on these classes' shape and texture codes only, e.g. 7 (default: all codes)")
    q.set_defaults(func=cmd_direction)

    q = sub.add_parser("edit", help="move a latent along a direction inside some classes' codes",
                       description="latent + strength x direction on the chosen classes' codes only; writes "
                                   "frame_<i>.png (image | mask), latent_<i>.npy, edit.png and diff.png "
                                   "(|frame - input| heat maps).")
    A.add_common(q)
    q.add_argument("--latent", required=True, metavar="FILE",
                   help="latent .npy (n_latent, D), e.g. from invert")
    q.add_argument("--direction", required=True, metavar="FILE",
                   help="direction .npy (n_latent, D), e.g. from direction")
    q.add_argument("--strength", default="-3,0,3",
                   help="comma-separated strengths; write --strength=-3,0,3 when the first is negative")
    A.add_classes(q, "edit only these classes' codes (default: those the direction moves)")
    _add_diff(q, "edit_diff.png")
    A.add_watermark(q)
    A.add_video(q, fps=4)
    A.add_c2pa(q)
    q.set_defaults(func=cmd_edit)
