"""Class names: ``classes.json`` in a data folder, the names stored in checkpoints, and the
defaults when neither has any.

``DIR/classes.json`` (optional, next to ``images/`` and ``labels/``)::

    {"classes": ["background", "skin", "eyes", ...],      # names in index order: K = their number
     "transparent": ["eyeglasses", 12],                   # optional: by name or by index
     "colors": {"hair": [120, 60, 20], "3": [0, 0, 255]}} # optional display colours (name or index)

A checkpoint written by ``train.py`` stores them under ``meta["classes"]`` as
``{"names": [...], "colors": {"<index>": [r, g, b]}}`` (a run on the built-in data: that data's
names, ``ssgan.data.synthetic.SyntheticFaces.class_names``). Checkpoints without names (the
official release ``.pt``) get :func:`default_names`: CelebAMask-HQ's 13 names when K = 13 (the
released models were trained on it), ``class<k>`` otherwise.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssgan.model.config import parse_class_list

#: CelebAMask-HQ's classes in the order of docs/training.md, "CelebAMask-HQ classes" (and of
#: ``ssgan.data.celebamask.CELEBAMASK_PARTS``).
CELEBAMASK_NAMES: tuple[str, ...] = (
    "background", "skin", "eyes", "brows", "mouth", "nose", "ears", "hair", "neck", "cloth",
    "eyeglasses", "hat", "earrings",
)
CLASSES_FILE = "classes.json"


class ClassesError(ValueError):
    """A bad classes.json or class name; the message is one line naming the file or the name."""


def default_names(k: int) -> tuple[str, ...]:
    """CelebAMask-HQ's names for K = 13, ``class0`` … ``class<K-1>`` otherwise."""
    return CELEBAMASK_NAMES if k == len(CELEBAMASK_NAMES) else tuple(f"class{i}" for i in range(k))


@dataclass(frozen=True)
class ClassInfo:
    """Names of classes 0 … K−1, the transparent ones (indices) and display colours (index -> RGB;
    the colours of the classes without one, and the drawing, are :func:`ssgan.visualize.palette`'s:
    ``palette(info.k, info.colors)``)."""

    names: tuple[str, ...]
    transparent: tuple[int, ...] = ()
    colors: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.names)

    def indices(self, text: str, what: str = "--classes") -> list[int]:
        """``"hair,eyes"``, ``"7,2"`` or a mix -> class indices; names are case-insensitive.
        Raises :class:`ClassesError` naming the unknown class and listing the known ones."""
        try:
            out = list(parse_class_list(text, self.names))
        except ValueError as e:
            raise ClassesError(f"{what}: {e}") from None
        bad = [i for i in out if not 0 <= i < self.k]
        if bad:
            raise ClassesError(f"{what}: class index {bad[0]} is out of range: this model has "
                               f"{self.k} classes (0..{self.k - 1})")
        if not out:
            raise ClassesError(f"{what} lists no class")
        return out

    def to_meta(self) -> dict[str, Any]:
        """What a checkpoint stores (``meta["classes"]``)."""
        return {"names": list(self.names), "colors": {str(i): list(c) for i, c in self.colors.items()}}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], k: int, transparent: Sequence[int] = ()) -> ClassInfo:
        """The classes of a checkpoint: its stored names when they are K, else :func:`default_names`."""
        stored = meta.get("classes") or {}
        names = stored.get("names") if isinstance(stored, Mapping) else None
        if not isinstance(names, list) or len(names) != k:
            return cls(default_names(k), tuple(transparent))
        stored_colors = stored.get("colors") or {}
        if not isinstance(stored_colors, Mapping):
            raise ClassesError(f"stored class colours must be an object {{index: [r, g, b]}}, not "
                               f"{type(stored_colors).__name__}")
        colors = {}
        for i, c in stored_colors.items():
            if not (isinstance(i, str) and i.isdecimal() and len(i) < 4 and int(i) < k):
                raise ClassesError(f"stored class colour key {str(i)[:20]!r} is not a class index 0..{k - 1}")
            colors[int(i)] = _color(c, "stored class colours")
        return cls(tuple(str(n) for n in names), tuple(transparent), colors)


def _color(value: Any, where: str) -> tuple[int, int, int]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int) and 0 <= v <= 255 for v in value)):
        raise ClassesError(f"{where}: a colour must be [r, g, b] with integers 0..255, not {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def _index(token: Any, names: Sequence[str], where: str) -> int:
    """A class given by name or index in a classes.json field -> its index."""
    if isinstance(token, int) and not isinstance(token, bool) and 0 <= token < len(names):
        return token
    if isinstance(token, str) and token.isdigit() and token not in names and int(token) < len(names):
        return int(token)
    if isinstance(token, str) and token in names:
        return names.index(token)
    raise ClassesError(f"{where}: {token!r} is not one of the {len(names)} classes "
                       f"({', '.join(names)}) nor an index 0..{len(names) - 1}")


def read_classes(path: str | Path) -> ClassInfo:
    """Read and check a classes.json (see the module doc); every problem is one line naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise ClassesError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise ClassesError(f'{path} must hold an object with "classes": a list of class names in index order')
    unknown = sorted(set(data) - {"classes", "transparent", "colors"})
    if unknown:
        raise ClassesError(f'{path}: unknown key(s) {", ".join(unknown)}; the keys are classes, transparent, '
                           f'colors')
    names = data["classes"]
    if len(names) > 256:
        raise ClassesError(f"{path}: {len(names)} classes, but label PNGs hold at most 256")
    if not all(isinstance(n, str) and n.strip() and n.isprintable() for n in names):  # names go in messages
        raise ClassesError(f'{path}: "classes" must be non-empty strings without control characters, got '
                           f'{ascii(names)[:200]}')
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        raise ClassesError(f'{path}: class name(s) {", ".join(duplicates)} appear more than once')
    transparent = data.get("transparent", [])
    if not isinstance(transparent, list):
        raise ClassesError(f'{path}: "transparent" must be a list of class names or indices')
    trans = tuple(sorted({_index(t, names, f'{path} "transparent"') for t in transparent}))
    colors_in = data.get("colors", {})
    if not isinstance(colors_in, dict):
        raise ClassesError(f'{path}: "colors" must be an object {{class name or index: [r, g, b]}}')
    colors = {_index(k, names, f'{path} "colors"'): _color(v, f'{path} "colors" {k!r}')
              for k, v in colors_in.items()}
    return ClassInfo(tuple(names), trans, colors)


def find_classes(*folders: str | Path | None) -> Path | None:
    """The first ``<folder>/classes.json`` that exists among ``folders`` (None entries skipped)."""
    for folder in folders:
        if folder is not None and (Path(folder) / CLASSES_FILE).is_file():
            return Path(folder) / CLASSES_FILE
    return None


def classes_overrides(info: ClassInfo, path: Path, given: dict[str, tuple[Any, str]]
                      ) -> dict[str, tuple[Any, str]]:
    """``given`` (see :func:`ssgan.model.config.config_overrides`) plus the class count and transparent
    classes of a classes.json at ``path``; where both set a field and disagree: ``ClassesError``
    naming both."""
    out = dict(given)
    for name, value in (("seg_dim", info.k), ("transparent_dims", info.transparent)):
        if name in given and given[name][0] != value:
            raise ClassesError(f"{given[name][1]} sets {name}={given[name][0]} but {path} gives "
                               f"{name}={value}; make them agree (or drop the flag)")
        out[name] = (value, str(path))
    return out
