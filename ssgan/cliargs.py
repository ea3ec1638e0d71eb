"""What every ``ssgan`` subcommand shares: the parser class, the spelling of the common arguments,
and loading a checkpoint's generator and ``.npy`` files with one-line errors.

One place per argument: a subcommand that takes a checkpoint, a device, a seed … calls the helper
here instead of declaring the argument itself, so that the flag, its type, its default and its help
text are the same in every command. See :mod:`ssgan.cli` for how a subcommand is added.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from ssgan.checkpoint import CheckpointError, inspect_checkpoint, load_checkpoint, param_digest
from ssgan.classes import ClassesError, ClassInfo
from ssgan.model.compiled import AUTO_MIN_SIZE, compile_synthesis, use_all_cores
from ssgan.provenance import TRAINED, Provenance, mark, software, video, watermark
from ssgan.provenance.c2pa_sign import C2PAError, C2PASigner


class CLIError(Exception):
    """An error reported as one line ``ssgan: error: …``, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` after every option that has a default (options whose default is
    ``None`` or ``False`` say in their own help what happens without them) and leaves out the
    deprecated spellings of an option."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "deprecated", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [o for o in action.option_strings if o not in hidden]
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or action.required or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``CLIError``), whose help shows defaults and
    hides deprecated spellings (:func:`add_argument`, :func:`add_out`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 2
        for a in self._actions:  # argparse names an option by all its strings: not the deprecated ones
            hidden = getattr(a, "deprecated", ())
            if hidden:
                message = message.replace("/".join(a.option_strings),
                                          "/".join(o for o in a.option_strings if o not in hidden))
        raise CLIError(message)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, and a deprecated positional (:class:`DeprecatedPositional`) given stands
        for its flag (with a warning); that flag, when required, is required only without it."""
        moved = [a for a in self._actions if isinstance(a, DeprecatedPositional)]
        required = [a.target for a in moved if a.target.required]
        self._require(required, False)
        try:
            ns, rest = super().parse_known_args(args, namespace)
        finally:
            self._require(required, True)
        for a in moved:
            value, given = ns.__dict__.pop(a.dest, None), getattr(ns, a.target.dest, None)
            given = None if given == a.target.default else given
            flag = spelling(a.target)
            if value is not None and given is not None:
                self.error(f"give {flag} once (the positional {a.metavar} is its deprecated spelling)")
            if value is not None:
                warn_deprecated(f"the positional {a.metavar}", f"{preferred(a.target)} {a.metavar}")
                setattr(ns, a.target.dest, value)
            elif a.target in required and given is None:
                self.error(f"the following arguments are required: {preferred(a.target)}")
        return ns, rest

    def format_usage(self) -> str:
        with self._shown_required():
            return super().format_usage()

    def format_help(self) -> str:
        with self._shown_required():
            return super().format_help()

    @contextlib.contextmanager
    def _shown_required(self) -> Iterator[None]:
        """Help shows a flag that a deprecated positional stands for as required, also while
        parsing (``--help``)."""
        targets = [a.target for a in self._actions if isinstance(a, DeprecatedPositional)
                   and not a.target.required and a.target_required]
        self._require(targets, True)
        try:
            yield
        finally:
            self._require(targets, False)

    @staticmethod
    def _require(actions: Sequence[argparse.Action], value: bool) -> None:
        for a in actions:
            a.required = value


def spelling(action: argparse.Action, flag: str | None = None) -> str:
    """How ``action`` is written on the command line: ``--out FILE``, ``--quiet``, ``CKPT``."""
    if not action.option_strings:
        return str(action.metavar or action.dest.upper())
    flag = flag or preferred(action)
    if action.nargs == 0:
        return flag
    metavar = action.metavar or action.dest.upper()
    return f"{flag} {' '.join(metavar) if isinstance(metavar, tuple) else metavar}"


def preferred(action: argparse.Action) -> str:
    """The spelling that ``--help`` shows first: the first long, not deprecated, option string."""
    current = [o for o in action.option_strings if o not in getattr(action, "deprecated", ())]
    return next((o for o in current if o.startswith("--")), current[0])


def warn_deprecated(old: str, new: str) -> None:
    """The one line that a deprecated spelling prints on stderr (it keeps working one release)."""
    print(f"warning: {old} is deprecated; use {new}", file=sys.stderr)


class DeprecatedAlias(argparse.Action):
    """Stores like ``store``; given under one of its ``deprecated`` option strings, it prints
    :func:`warn_deprecated`'s line. ``--help`` does not show the deprecated strings
    (:class:`HelpFormatter`), nor do error lines (:meth:`Parser.error`)."""

    def __init__(self, option_strings: Sequence[str], dest: str, deprecated: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = tuple(deprecated)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string in self.deprecated:
            warn_deprecated(option_string, preferred(self))
        setattr(namespace, self.dest, values)


class DeprecatedPositional(argparse.Action):
    """A hidden optional positional that was the old spelling of the flag ``target`` (e.g. the
    output file of ``convert SRC DST``, now ``--out DST``); :class:`Parser` moves its value to
    ``target``'s dest with a warning."""

    def __init__(self, option_strings: Sequence[str], dest: str, target: argparse.Action, nargs: str = "?",
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=nargs, default=None, type=target.type,
                         help=argparse.SUPPRESS, metavar=dest.upper())
        self.target = target
        self.target_required = target.required

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)


def add_argument(q: argparse.ArgumentParser, name: str, *aliases: str, deprecated: Sequence[str] = (),
                 **kwargs: Any) -> argparse.Action:
    """``q.add_argument(name, *aliases, *deprecated, …)``; the ``deprecated`` spellings still work,
    print one warning line when used and are hidden from ``--help``."""
    if deprecated:
        kwargs.update(action=DeprecatedAlias, deprecated=tuple(deprecated))
    return q.add_argument(name, *aliases, *deprecated, **kwargs)


def deprecated_spellings(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(old spelling, new spelling) of every deprecated flag or positional of ``parser`` itself."""
    out = []
    for a in parser._actions:
        if isinstance(a, DeprecatedAlias):
            out += [(spelling(a, old), spelling(a)) for old in a.deprecated]
        elif isinstance(a, DeprecatedPositional):
            out.append((f"{a.metavar} (positional)", spelling(a.target)))
    return out


#: Errors every command may raise for bad input (reported as one line, exit status 2).
COMMON_ERRORS: tuple[type[Exception], ...] = (CLIError, CheckpointError, ClassesError, C2PAError,
                                              video.VideoError)

#: Errors about a path the user named, reported as one line "PATH: reason" when they carry the path.
FILE_ERRORS: tuple[tuple[type[OSError], str], ...] = (
    (FileNotFoundError, "no such file"), (PermissionError, "permission denied"),
    (IsADirectoryError, "is a folder, not a file"), (FileExistsError, "exists and is not a folder"),
    (NotADirectoryError, "a part of this path is a file, not a folder"))


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
        errors: tuple[type[Exception], ...] = ()) -> int:
    """Parse ``argv`` and call ``args.func(args)``: the one way every ``ssgan`` command and every
    ``python -m ssgan…`` entry point runs. Returns 0 on success (or the status ``func`` returned);
    bad input (:data:`COMMON_ERRORS`, ``errors``, a named file that cannot be used) exits 2 after one
    line ``ssgan: error: …`` on stderr. Any other exception is a bug and keeps its traceback."""
    try:
        args = parser.parse_args(argv)
        status = args.func(args)
    except COMMON_ERRORS + tuple(errors) as e:
        fail(str(e))
    except tuple(t for t, _ in FILE_ERRORS) as e:
        if e.filename is None:  # not about a file the user named: a bug
            raise
        fail(f"{e.filename}: {next(r for t, r in FILE_ERRORS if isinstance(e, t))}")
    return int(status or 0)


def fail(message: str) -> NoReturn:
    """``ssgan: error: MESSAGE`` on one line of stderr, exit status 2."""
    print(f"ssgan: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)


def standalone(prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
               argv: Sequence[str] | None, errors: tuple[type[Exception], ...] = ()) -> int:
    """A ``python -m ssgan.…`` entry point: the arguments of its ``ssgan`` subcommand
    (``add_arguments``, which also sets ``func``) under the name ``prog``, run by :func:`run`."""
    q = Parser(prog=prog, description=description)
    add_arguments(q)
    return run(q, argv, errors)


# ----- the common arguments -----------------------------------------------------------------------
def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_type(text: str) -> str:
    """A torch device name that exists here (argparse ``type``)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA device here; use --device cpu")
    return text


def add_checkpoint(q: argparse.ArgumentParser,
                   help: str = "checkpoint: ssgan .safetensors or official .pt; a run folder or "
                               "RUN/checkpoints/latest: the newest valid step checkpoint") -> None:
    q.add_argument("ckpt", metavar="CKPT", help=help)


def add_generator(q: argparse.ArgumentParser) -> None:
    q.add_argument("--generator", metavar="CKPT",
                   help="render with this checkpoint's generator instead of CKPT's (e.g. "
                        "OUTDIR/generator.safetensors written by invert --finetune-steps; same "
                        "configuration); default: CKPT's G-EMA, else its G")


def add_device(q: argparse.ArgumentParser) -> None:
    q.add_argument("--device", type=device_type, default=default_device(),
                   help="torch device; cuda when available, else cpu")


def add_compile(q: argparse.ArgumentParser, default: bool | None, what: str = "the generator") -> None:
    """``--compile/--no-compile``: ``what`` through torch.compile (inductor), or eager (``default``
    None: auto, :func:`ssgan.model.compiled.compile_default`)."""
    shown = ("on" if default else "off" if default is False
             else f"on for models of {AUTO_MIN_SIZE} px and more")
    q.add_argument("--compile", action=argparse.BooleanOptionalAction, default=default,
                   help=f"torch.compile (inductor) {what}; --no-compile: eager (default: "
                        f"{shown}; compiled graphs are cached on disk, "
                        f"TORCHINDUCTOR_CACHE_DIR, default ~/.cache/ssgan/inductor)")


def prepare_inference(args: argparse.Namespace, G: Any = None) -> None:
    """An inference command's set-up: torch threads = the cores this process may use; with a ``G``
    and ``--compile``, G's synthesis through inductor (:mod:`ssgan.model.compiled`)."""
    use_all_cores()
    if G is not None:
        compile_synthesis(G, getattr(args, "compile", False))


def add_outdir(q: argparse.ArgumentParser, help: str = "folder for the output files", required: bool = True,
               aliases: Sequence[str] = (), deprecated: Sequence[str] = ()) -> argparse.Action:
    """``--outdir DIR``: the one spelling of a folder that a command writes (``deprecated``: old
    spellings that still work with a warning)."""
    return add_argument(q, "--outdir", *aliases, deprecated=deprecated, dest="outdir", metavar="DIR",
                        required=required, help=help)


def add_out(q: argparse.ArgumentParser, help: str, required: bool = False, default: str | None = None,
            deprecated: Sequence[str] = (), positional: str | None = None) -> argparse.Action:
    """``--out FILE``: the one spelling of a file that a command writes. ``deprecated``: old flag
    spellings (e.g. ``--json``); ``positional``: the metavar of an old positional spelling
    (e.g. ``DST``), which still works with a warning."""
    out = add_argument(q, "--out", deprecated=deprecated, dest="out", metavar="FILE", required=required,
                       default=default, help=help)
    if positional:
        q.add_argument(positional.lower(), action=DeprecatedPositional, target=out, nargs="?")
    return out


def add_count(q: argparse.ArgumentParser, help: str, default: int, deprecated: Sequence[str] = (),
              dest: str = "count") -> argparse.Action:
    """``-n N`` / ``--count N``: how many things (images, latents, items) the command makes
    (``args.count``, or ``dest``)."""
    return add_argument(q, "-n", "--count", deprecated=deprecated, dest=dest, metavar="N", type=int,
                        default=default, help=help)


def add_seed(q: argparse.ArgumentParser, help: str = "random seed (samples and the mean w)") -> None:
    q.add_argument("--seed", type=int, default=0, help=help)


def add_truncation(q: argparse.ArgumentParser) -> None:
    q.add_argument("--truncation", type=float, default=1.0,
                   help="truncation psi (< 1 pulls w towards the mean of 4096 mapped z)")


def add_quiet(q: argparse.ArgumentParser) -> None:
    q.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")


def add_classes(q: argparse.ArgumentParser, help: str, required: bool = False,
                aliases: Sequence[str] = ()) -> None:
    """``--classes NAME|INDEX [...]``: one or more class names or indices, separated by spaces or
    commas (``hair eyes``, ``hair,eyes``, ``7 2``); ``args.classes`` is their comma-joined text, or
    ``None`` when not given. Read it with :meth:`ssgan.classes.ClassInfo.indices`."""
    q.add_argument("--classes", *aliases, dest="classes", nargs="+", metavar="CLASS", required=required,
                   type=str, help=help + " (names or indices, see ssgan info)")


def add_watermark(q: argparse.ArgumentParser) -> None:
    """``--watermark-key K`` and ``--no-watermark``: every command that writes generated pictures
    (docs/provenance.md); read back by :func:`provenance`."""
    add_watermark_key(q)
    add_no_watermark(q)


def watermark_key(text: str) -> int:
    """``--watermark-key``'s type: an integer key id that fits the watermark's payload."""
    top = (1 << watermark.KEY_BITS) - 1
    try:
        key = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; pass 0..{top}") from None
    if not 0 <= key <= top:
        raise argparse.ArgumentTypeError(f"{key} is out of range; pass 0..{top}")
    return key


def add_watermark_key(q: argparse.ArgumentParser) -> None:
    q.add_argument("--watermark-key", type=watermark_key, default=0, metavar="K",
                   help=f"key id (0..{(1 << watermark.KEY_BITS) - 1}) in the invisible watermark of the "
                        f"pictures written, to tell your outputs apart (ssgan detect prints it)")


def add_no_watermark(q: argparse.ArgumentParser) -> None:
    q.add_argument("--no-watermark", action="store_true",
                   help="leave the pixels exact (research pipelines): no invisible watermark; the XMP "
                        "record that the pictures are synthetic stays and says the watermark is off "
                        "(default: watermarked)")


def provenance(args: argparse.Namespace, G: torch.nn.Module | None, action: str,
               source_type: str = TRAINED) -> Provenance:
    """The record of the pictures a command writes (:func:`add_watermark`'s flags; ``G``: the
    generator whose :func:`~ssgan.checkpoint.param_digest` goes in, None for figures)."""
    return Provenance(source_type, action, software(), None if G is None else param_digest(G),
                      not args.no_watermark, args.watermark_key)


def classes_text(values: Sequence[str] | None) -> str | None:
    """``--classes`` values as ``ClassInfo.indices`` reads them: ``["hair", "7,2"]`` -> ``"hair,7,2"``."""
    return None if values is None else ",".join(values)


def add_fps(q: argparse.ArgumentParser, default: float) -> None:
    q.add_argument("--fps", type=float, default=default, help="frames per second of the video")


def add_video(q: argparse.ArgumentParser, fps: float) -> None:
    """``--video FILE.mp4`` (also write the frames as an H.264 video) and ``--fps``; read with
    :func:`video_path` before any work."""
    q.add_argument("--video", metavar="FILE",
                   help="also write the frames as an H.264 .mp4 FILE (its folder must exist), marked as "
                        "synthetic in its metadata; default: no video")
    add_fps(q, fps)


def video_path(args: argparse.Namespace, flag: str = "--video") -> Path | None:
    """The video path of ``flag`` checked (an .mp4 name in an existing folder, a
    :class:`VideoError` otherwise), or None without it; ``--fps`` must be > 0. Called before any
    work."""
    if args.fps <= 0:
        raise CLIError(f"--fps must be > 0, not {args.fps:g}")
    path = getattr(args, flag.lstrip("-").replace("-", "_"))
    return None if path is None else video.check_video_path(path, flag)


def write_video(path: Path, frames: Iterable[np.ndarray], args: argparse.Namespace, prov: Provenance,
                total: int | None = None) -> Path:
    """``frames`` as the H.264 video ``path`` at ``--fps``, each frame watermarked as ``prov`` asks
    (:func:`ssgan.provenance.mark`), with a progress bar unless ``--quiet``
    (:func:`ssgan.provenance.video.write_video`)."""
    video.write_video(path, frames, args.fps, prov, mark_frame=lambda frame: mark(frame, prov)[0],
                      progress=not args.quiet, total=total)
    return path


def add_c2pa(q: argparse.ArgumentParser) -> None:
    """``--c2pa-cert FILE --c2pa-key FILE``: sign the outputs with C2PA content credentials (read
    with :func:`c2pa_signer`; ``$SSGAN_C2PA_CERT`` / ``$SSGAN_C2PA_KEY`` when not given)."""
    q.add_argument("--c2pa-cert", metavar="FILE",
                   help="PEM certificate chain (signing certificate first, then intermediates) to sign "
                        "the outputs with C2PA content credentials, with --c2pa-key; default: "
                        "$SSGAN_C2PA_CERT, else no manifest (docs/provenance_c2pa_video.md)")
    q.add_argument("--c2pa-key", metavar="FILE",
                   help="the PEM private key of --c2pa-cert's signing certificate; default: $SSGAN_C2PA_KEY")


def c2pa_signer(args: argparse.Namespace) -> C2PASigner | None:
    """The checked signer of ``--c2pa-cert``/``--c2pa-key`` (else of the environment), or None:
    called before any work, so a bad certificate or key stops the command before it writes."""
    if args.c2pa_cert is None and args.c2pa_key is None:
        return C2PASigner.from_env()
    if args.c2pa_cert is None or args.c2pa_key is None:
        raise CLIError("give --c2pa-cert and --c2pa-key together (the chain and its signing key)")
    return C2PASigner.from_files(args.c2pa_cert, args.c2pa_key)


def add_common(q: argparse.ArgumentParser, outdir: bool = True, generator: bool = True) -> None:
    """The arguments of a command that renders with a checkpoint's generator: CKPT, ``--outdir``,
    ``--seed``, ``--device``, ``--truncation``, ``--quiet`` and ``--generator``."""
    add_checkpoint(q)
    if outdir:
        add_outdir(q)
    add_seed(q)
    add_device(q)
    add_truncation(q)
    add_quiet(q)
    if generator:
        add_generator(q)


# ----- loading and saving ---------------------------------------------------------------------------
def load_generator(args: argparse.Namespace) -> tuple[Any, ClassInfo]:
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


def require_semantic(config: Any, path: Any, what: str) -> None:
    """A one-line :class:`CLIError` when ``config`` (a checkpoint's) is the StyleGAN2 baseline, which
    has no classes or masks: ``what`` (e.g. ``"ssgan mix"``) needs a SemanticStyleGAN checkpoint."""
    if not config.semantic:
        raise CLIError(f"{path} is a StyleGAN2 checkpoint (arch {config.arch}: no classes or masks); {what} "
                       f"needs a SemanticStyleGAN checkpoint (one trained without --arch stylegan2)")


def load_npy(path: str | Path, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
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


def save_npy(array: np.ndarray, path: Path) -> None:
    """``array`` as float32 ``.npy`` at ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))
