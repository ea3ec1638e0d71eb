"""Every flag of every ``ssgan`` command, what it means, and the check that one flag name has one
meaning across all commands (docs/cli.md is :func:`markdown`'s output; tests/test_cli_flags.py
runs :func:`conflicts`).

The meaning of a flag, concretely: the sentence of :data:`MEANINGS` and its *kind*, the sort of
value it takes (:func:`kind`): ``switch`` (no value), ``number``, ``choice``, ``names`` (class
names or indices), ``file``, ``folder``, ``path`` (a file or a folder), ``text``, or
``switch or value`` (a bare flag, or one value). File and folder come from the metavar
(:data:`METAVAR_KINDS`: ``FILE``, ``CKPT``, ``CSV``, ``JSON``: a file; ``DIR``: a folder; ``PATH``:
either). Two uses of one flag name conflict when their kinds are not :data:`COMPATIBLE`. Every
flag that two or more commands take has its sentence in :data:`MEANINGS`. A deprecated spelling
(hidden, it warns) is exempt: it does what the flag it forwards to does, and that flag is checked.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from ssgan.cliargs import DeprecatedAlias, deprecated_spellings, preferred, spelling

#: The kind of value a metavar names; any other metavar is ``text``.
METAVAR_KINDS: dict[str, str] = {"FILE": "file", "CKPT": "file", "CSV": "file", "JSON": "file",
                                 "DIR": "folder", "PATH": "path", "CLASS": "names"}

#: Pairs of different kinds that one flag name may have in two commands: a ``path`` is a file or a
#: folder; a flag that may stand alone (``--resume``) reads as a switch.
COMPATIBLE: frozenset[frozenset[str]] = frozenset({
    frozenset({"path", "file"}), frozenset({"path", "folder"}), frozenset({"switch", "switch or value"})})

#: The one meaning of each flag that two or more commands take (keyed by its preferred spelling).
MEANINGS: dict[str, str] = {
    "--batch": "how many images one step or pass handles together",
    "--ckpt-every": "write a checkpoint every N steps",
    "--classes": "class names or indices (`hair eyes`, `hair,eyes`, `7 2`; `ssgan info` lists them)",
    "--compile": "run the networks through torch.compile (inductor); --no-compile: eager",
    "--count": "how many things (images, latents, items) the command makes",
    "--data": "a data folder with images/ (and labels/, classes.json), or the built-in data",
    "--device": "the torch device (cpu, cuda, cuda:1)",
    "--diff": "also write the edit-locality figure and print the share of the change inside the classes",
    "--c2pa-cert": "a PEM certificate chain to sign the outputs with C2PA content credentials",
    "--c2pa-key": "the PEM private key of --c2pa-cert's signing certificate",
    "--encoder": "an encoder file from `ssgan encoder train` (start from its codes)",
    "--fps": "frames per second of the video",
    "--frames": "how many frames an interpolation has",
    "--generator": "render with this checkpoint's generator instead of CKPT's",
    "--images": "the images to read: a folder (invert: image files and folders)",
    "--inception": "FID Inception weights (a file)",
    "--labels": "a folder of label maps (<stem>.png, class indices)",
    "--lambda-seg": "weight of the mask cross-entropy term",
    "--latent": "a latent .npy (n_latent, D)",
    "--log-every": "log statistics every N steps",
    "--lpips-weights": "LPIPS-VGG weight files (default: 1 - MS-SSIM, no weights)",
    "--lr": "Adam learning rate",
    "--metrics": "comma-separated metric names (fid50k_full, kid50k, maskfd10k, ...)",
    "--no-watermark": "no invisible watermark in the pictures' pixels (their XMP record stays and says so)",
    "--out": "the file the command writes",
    "--outdir": "the folder the command writes into",
    "--part": "which codes of the classes: shape, texture or all",
    "--precision": "arithmetic precision of the networks (fp32, bf16, ...)",
    "--quiet": "no progress bar",
    "--radius": "dilation of the classes' masks for --diff, in pixels",
    "--resume": "continue from the saved state instead of starting again",
    "--sample-every": "write sample pictures every N steps",
    "--seed": "random seed",
    "--seg-dim": "the number of classes",
    "--size": "image size in pixels",
    "--steps": "optimisation steps",
    "--threads": "torch intra-op CPU threads",
    "--truncation": "truncation psi (< 1 pulls w towards the mean w)",
    "--video": "also write the frames as an H.264 .mp4 file",
    "--watermark-key": "the key id (0..65535) carried by the pictures' invisible watermark",
    "--workers": "worker processes",
}


@dataclass(frozen=True)
class Use:
    """One flag spelling in one command: ``ssgan <command> <flag>``."""

    command: str
    flag: str
    action: argparse.Action
    deprecated: bool


def kind(action: argparse.Action) -> str:
    """The sort of value ``action`` takes (see the module doc)."""
    if action.nargs == 0:
        return "switch"
    if action.choices is not None:
        return "choice"
    if action.type in (int, float):
        value = "number"
    else:
        value = METAVAR_KINDS.get(action.metavar, "text") if isinstance(action.metavar, str) else "text"
    if action.nargs == "?" and action.option_strings and action.const is not None:
        return "switch or value"
    return value


def commands(parser: argparse.ArgumentParser,
             prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``"data inspect"``, its parser) for every command and nested action under ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield path, sub
                yield from commands(sub, path)


def uses(parser: argparse.ArgumentParser) -> list[Use]:
    """Every flag spelling of every command under ``parser`` (``--help`` left out)."""
    out = []
    for name, q in commands(parser):
        for a in q._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            hidden = a.deprecated if isinstance(a, DeprecatedAlias) else ()
            out += [Use(name, flag, a, flag in hidden) for flag in a.option_strings]
    return out


def conflicts(parser: argparse.ArgumentParser) -> list[str]:
    """One line per flag name that carries two meanings (kinds that are not :data:`COMPATIBLE`)
    under ``parser``, naming the commands and what each reads it as; empty when every flag has one
    meaning."""
    by_flag: dict[str, list[Use]] = {}
    for u in uses(parser):
        if not u.deprecated:
            by_flag.setdefault(u.flag, []).append(u)
    lines = []
    for flag, found in sorted(by_flag.items()):
        kinds = {kind(u.action) for u in found}
        if any(a != b and frozenset({a, b}) not in COMPATIBLE for a in kinds for b in kinds):
            lines.append(f"{flag}: " + "; ".join(f"{u.command}: {kind(u.action)}" for u in found))
    return lines


def shared(parser: argparse.ArgumentParser) -> dict[str, list[Use]]:
    """Preferred spelling -> its (not deprecated) uses, for flags that two or more commands take."""
    groups: dict[str, list[Use]] = {}
    for u in uses(parser):
        if not u.deprecated and u.flag == u.action.option_strings[0]:
            groups.setdefault(preferred(u.action), []).append(u)
    return {f: g for f, g in groups.items() if len({u.command for u in g}) > 1}


def deprecated(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    """(old spelling, new spelling, command) of every deprecated spelling under ``parser``."""
    return [(old, new, name) for name, q in commands(parser) for old, new in deprecated_spellings(q)]


def _spellings(found: list[Use]) -> str:
    first = found[0].action
    shown = [o for o in first.option_strings if o not in getattr(first, "deprecated", ())]
    return ", ".join(f"`{spelling(first, o)}`" for o in shown)


def markdown(parser: argparse.ArgumentParser) -> str:
    """docs/cli.md: the flags that several commands share (flag -> meaning -> commands) and the
    deprecated spellings (old -> new -> commands)."""
    lines = ["# Command-line flags", "",
             "One flag name has one meaning in every `ssgan` command and in their other forms:",
             "`python train.py` is `ssgan train`, `python -m ssgan.data` is `ssgan data`,",
             "`python -m ssgan.train.plot` is `ssgan plot`, `python -m ssgan.serve` is `ssgan serve`",
             "(the same parser, `ssgan.cliargs.Parser`). Bad input is one line `ssgan: error: ...` on",
             "stderr and exit status 2, in every form.", "",
             "A file the command writes is always `--out FILE`, a folder `--outdir DIR`, how many",
             "things it makes `-n/--count N`, classes `--classes CLASS [CLASS ...]`, label maps",
             "`--labels DIR`. Flags of one command only: `ssgan COMMAND --help`. The meanings below are",
             "`ssgan.cli_flags.MEANINGS`; `tests/test_cli_flags.py` fails when one flag name takes two",
             "kinds of value. This page is written by `python docs/make_cli.py`.", "",
             "## Flags that several commands take", "",
             "| flag | takes | meaning | commands |", "|---|---|---|---|"]
    for flag, found in sorted(shared(parser).items()):
        names = ", ".join(dict.fromkeys(u.command for u in found))
        kinds = "; ".join(sorted({kind(u.action) for u in found}))
        lines.append(f"| {_spellings(found)} | {kinds} | {MEANINGS.get(flag, '?')} | {names} |")
    lines += ["", "## Deprecated spellings", "",
              "They still work for one release, hidden from `--help`, and print one line",
              "`warning: OLD is deprecated; use NEW` on stderr. They go in the next release.", "",
              "| old | new | commands |", "|---|---|---|"]
    rows: dict[tuple[str, str], list[str]] = {}
    for old, new, name in deprecated(parser):
        rows.setdefault((old, new), []).append(name)
    lines += [f"| `{old}` | `{new}` | {', '.join(names)} |" for (old, new), names in sorted(rows.items())]
    return "\n".join(lines) + "\n"

