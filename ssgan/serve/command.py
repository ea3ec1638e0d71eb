"""The ``serve`` command: load a checkpoint, start the editor's web app, print its address.

``add_arguments(parser)`` declares the options (shared by ``ssgan serve`` and ``python -m
ssgan.serve``), ``run(args)`` serves until Ctrl+C, ``main(argv)`` is the module entry point.
Expected failures are one line ``ssgan serve: error: …`` with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import torch

from ssgan.checkpoint import CheckpointError, load_checkpoint
from ssgan.serve.engine import Engine, load_directions

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="checkpoint: ours (.safetensors), an official .pt, or a train.py run's")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but 127.0.0.1/localhost exposes the editor (a warning)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device of the generator")
    p.add_argument("--directions", metavar="DIR", default=None,
                   help="folder of `ssgan direction` .npy files for the direction slider "
                        "(default: the top principal components of w, per class)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation of random faces")
    p.add_argument("--invert-steps", type=int, default=200, help="default latent-search steps of an upload")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted, MB")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest upload accepted, pixels")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")


def build(args: argparse.Namespace):
    """The Starlette app for ``args`` (raises ``ValueError``/``CheckpointError`` with one line)."""
    from ssgan.serve.app import Limits, create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.ckpt, args.device)
    G = ck.g_ema if ck.g_ema is not None else ck.g
    if G is None:
        raise ValueError(f"checkpoint {args.ckpt} holds no generator (sections: {', '.join(ck.sections)})")
    cfg = G.config
    directions = load_directions(args.directions, cfg.n_latent, cfg.style_dim) if args.directions else None
    limits = Limits(max_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                    invert_steps=args.invert_steps)
    return create_app(Engine(G, ck.classes, directions, args.truncation), limits)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        app = build(args)
    except (ValueError, CheckpointError, OSError) as e:
        print(f"ssgan serve: error: {e}", file=sys.stderr)
        return 2
    if args.host not in LOCAL_HOSTS:
        warnings.warn(f"--host {args.host}: the editor is reachable from other machines; it has no "
                      f"authentication", stacklevel=1)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    names = ", ".join(app.state.editor.engine.classes.names)

    original = server.startup  # print the bound address once listening (also for --port 0)

    async def startup(sockets=None) -> None:
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssgan.serve", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
