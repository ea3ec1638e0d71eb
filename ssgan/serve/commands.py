"""The ``serve`` subcommand: load a checkpoint, start the editor's web app, print its address.

Registered by :func:`add_parser` (see :mod:`ssgan.cli`); ``python -m ssgan.serve CKPT`` is
``ssgan serve CKPT`` (:func:`main`). :func:`build` makes the app from the parsed arguments (the tests
and the benchmark use it), :func:`cmd_serve` serves it until Ctrl+C.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ssgan import cliargs as A
from ssgan.model.compiled import DEFAULTS as COMPILED_BY_DEFAULT
from ssgan.model.compiled import compile_default

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(q: argparse.ArgumentParser) -> None:
    """The serve command's arguments (common ones through :mod:`ssgan.cliargs`)."""
    A.add_checkpoint(q, help="checkpoint: ssgan .safetensors (ours, a train.py run's) or official .pt")
    A.add_generator(q)
    A.add_device(q)
    A.add_truncation(q)
    q.add_argument("--encoder", metavar="FILE",
                   help="an `ssgan encoder train` file: uploads are inverted by the encoder (milliseconds) "
                        "instead of the latent search (default: none, the search)")
    q.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but 127.0.0.1/localhost exposes the editor (a warning)")
    q.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    q.add_argument("--directions", metavar="DIR",
                   help="folder of `ssgan direction` .npy files for the direction slider; default: the "
                        "top 5 principal components of w, applied to the chosen classes' codes")
    q.add_argument("--invert-steps", type=int, default=200, help="latent-search steps of an upload")
    q.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted, MB")
    q.add_argument("--max-pixels", type=int, default=40_000_000, help="largest upload accepted, pixels")
    q.add_argument("--threads", type=int,
                   help="torch intra-op CPU threads; default: the cores this process may use")
    A.add_watermark(q)
    A.add_compile(q, COMPILED_BY_DEFAULT["serve"], "the renders")
    q.set_defaults(func=cmd_serve)


DESCRIPTION = ("Start a local web app to edit faces by region: sample, resample or copy classes' "
               "shape/texture codes, interpolate, move along directions, upload and invert a photo, download "
               "PNGs and the W+ .npy. Binds 127.0.0.1 unless --host says otherwise.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``."""
    add_arguments(sub.add_parser("serve", help="an offline region editor in the browser (a local web app)",
                                 description=DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssgan.serve CKPT …``: the same as ``ssgan serve CKPT …``."""
    return A.standalone("python -m ssgan.serve", DESCRIPTION, add_arguments, argv)


def build(args: argparse.Namespace) -> Any:
    """The Starlette app for ``args``; bad input raises ``CLIError`` (one line)."""
    from ssgan.serve.app import create_app
    from ssgan.serve.editor import Limits
    from ssgan.serve.engine import Engine, load_directions

    A.prepare_inference(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 1 <= args.invert_steps <= 2000:
        raise A.CLIError(f"--invert-steps must be in 1..2000, not {args.invert_steps}")
    G, classes = A.load_generator(args)
    cfg = G.config
    A.require_semantic(cfg, args.ckpt, "ssgan serve (the region editor)")
    directions = None
    if args.directions:
        try:
            directions = load_directions(args.directions, cfg.n_latent, cfg.style_dim)
        except ValueError as e:
            raise A.CLIError(str(e)) from None
    encoder = None
    if args.encoder:
        from ssgan.edit.encoder import EncoderError, encode, load_encoder

        try:
            model, _ = load_encoder(args.encoder, G)
        except EncoderError as e:
            raise A.CLIError(str(e)) from None

        def encoder(image: torch.Tensor) -> torch.Tensor:
            return encode(G, model, image)

    limits = Limits(max_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                    invert_steps=args.invert_steps)
    engine = Engine(G, classes, directions, args.truncation, encoder=encoder,
                    compile=compile_default(args.compile, G.config.size))
    return create_app(engine, limits, not args.no_watermark, args.watermark_key)


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve until Ctrl+C; prints the address once the socket is bound."""
    import uvicorn

    app = build(args)
    if args.host not in LOCAL_HOSTS:
        warnings.warn(f"--host {args.host}: the editor is reachable from other machines and has no "
                      f"authentication", stacklevel=1)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False))
    names = ", ".join(app.state.editor.engine.classes.names)
    original = server.startup

    async def startup(sockets: Any = None) -> None:  # the real address, also for --port 0
        await original(sockets)
        for s in server.servers:
            for sock in s.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                print(f"ssgan serve: http://{shown}:{port}/  ({args.ckpt}; classes: {names}; "
                      f"device {args.device}; Ctrl+C stops)", flush=True)
                return

    server.startup = startup  # type: ignore[method-assign]
    server.run()
