"""Training options declared once: a dataclass field that is a flag of ``python train.py`` /
``ssgan train`` carries its default, its help text and how it is spelled (:func:`option`); the
parser is built by walking the fields (:func:`add_options`), and the parsed values go back into
the same dataclasses by walking them again (:func:`values`).

Two dataclasses hold the options: :class:`ssgan.train.steps.TrainConfig` (the objective, with the
paper's defaults) and :class:`ssgan.train.spec.RunSpec` (the run: preset, batch, data, outputs …).
Where a new run departs from the paper's default (``--lr``, ``--r1-img`` …), the run's default and
its reason are a :class:`Departure` in :data:`ssgan.train.spec.DEPARTURES`.

A field's flag is ``--`` + its name with ``-`` for ``_`` (:func:`flag_of`); its argparse
``type`` / ``action`` / ``nargs`` follow from its annotation (``int``, ``float``, ``bool`` a
switch, ``bool | None`` ``--x / --no-x``, ``tuple[float, float]`` two numbers) unless given.
``official=True`` adds the official script's underscore spelling (``--r1_img``) as a hidden alias;
``deprecated`` spellings still work, are hidden and warn (:func:`ssgan.cliargs.add_argument`);
``add`` is a :mod:`ssgan.cliargs` helper that declares a flag shared by every command
(``--device``, ``--outdir``) instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any

from ssgan import cliargs

OPTION = "option"  # the key of an option's description in a field's metadata


@dataclass(frozen=True)
class Departure:
    """A run's default for a flag that is not its field's default: ``value`` (e.g. None or
    ``"auto"``, resolved when the run starts), ``help`` (why, and what it resolves to) and the
    argparse ``type`` when the value needs one (e.g. a number or ``auto``)."""

    value: Any
    help: str
    type: Callable[[str], Any] | None = None


def option(default: Any = MISSING, help: str = "", *, group: str, default_factory: Any = MISSING,
           official: bool = False, deprecated: Sequence[str] = (), add: Callable[[Any], None] | None = None,
           **parse: Any) -> Any:
    """A dataclass field that is a command-line flag (see the module doc): ``group`` names its
    section of ``--help``; ``parse``: argparse keywords (``choices``, ``metavar``, ``type`` …)."""
    meta = {OPTION: {"help": help, "group": group, "official": official,
                     "deprecated": tuple(deprecated), "add": add, "parse": parse}}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are flags, in declaration order."""
    return [f for f in dataclasses.fields(cls) if OPTION in f.metadata]


def flag_of(cls: type, name: str) -> str:
    """The flag of option field ``name`` of ``cls``: ``--`` + the name with ``-`` for ``_``
    (``r1_img``: ``"--r1-img"``)."""
    if name not in {f.name for f in option_fields(cls)}:
        raise KeyError(f"{cls.__name__}.{name} is not a command-line option")
    return "--" + name.replace("_", "-")


def field_default(f: dataclasses.Field) -> Any:
    """The default of field ``f`` (calling its ``default_factory``)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]


def parse_defaults(cls: type, departures: Mapping[str, Departure] | None = None) -> dict[str, Any]:
    """{field: the value a run gets without its flag}: ``departures``' value, else the field's default."""
    departures = departures or {}
    return {f.name: departures[f.name].value if f.name in departures else field_default(f)
            for f in option_fields(cls)}


def values(cls: type, parsed: Mapping[str, Any]) -> dict[str, Any]:
    """{field: parsed value} for the option fields of ``cls`` (other keys of ``parsed`` ignored)."""
    return {f.name: parsed[f.name] for f in option_fields(cls) if f.name in parsed}


def _kind(hint: Any, default: Any) -> dict[str, Any]:
    """argparse keywords that follow from a field's annotation (see the module doc)."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    base = next(m for m in members if m is not type(None))
    if base is bool:
        return {"action": argparse.BooleanOptionalAction} if default is None else {"action": "store_true"}
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        return {"nargs": len(args), "type": args[0]}
    return {"type": base} if base in (int, float) else {}


def add_options(q: Any, cls: type, group: str, departures: Mapping[str, Departure] | None = None) -> None:
    """Add a flag to ``q`` (a parser or argument group) for every option field of ``cls`` in section
    ``group``, with ``departures``' defaults and reasons where given."""
    departures = departures or {}
    hints = typing.get_type_hints(cls)
    defaults = parse_defaults(cls, departures)
    for f in option_fields(cls):
        o = f.metadata[OPTION]
        if o["group"] != group:
            continue
        if o["add"] is not None:
            o["add"](q)
            continue
        kwargs = {**_kind(hints[f.name], defaults[f.name]), **o["parse"], "dest": f.name,
                  "default": defaults[f.name], "help": o["help"]}
        if f.name in departures:
            d = departures[f.name]
            kwargs["help"] = f"{o['help']}; {d.help}"
            kwargs.update({"type": d.type} if d.type is not None else {})
        cliargs.add_argument(q, flag_of(cls, f.name), deprecated=o["deprecated"], **kwargs)
        if o["official"]:  # the official script's spelling: works, not shown
            hidden = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
            q.add_argument(f"--{f.name}", **{**kwargs, **hidden})
