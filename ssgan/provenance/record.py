"""What an ssgan picture says about itself: :class:`Provenance`, the record written into every
image's XMP packet (docs/provenance.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from importlib import metadata
from typing import Any

_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
#: IPTC digital source type of a picture made by a trained model (generate, mix, train samples …).
TRAINED = _IPTC + "trainedAlgorithmicMedia"
#: … of a user's photo combined with generated content (edits and reconstructions of a photo).
COMPOSITE = _IPTC + "compositeWithTrainedAlgorithmicMedia"
#: … of a figure drawn by code from numbers (training curves).
ALGORITHMIC = _IPTC + "algorithmicMedia"
#: … of a sheet laid out from a user's own images (``ssgan data inspect``): no generated content.
DATA_FIGURE = _IPTC + "composite"
#: The source types that say a picture holds generated content (``ssgan detect``'s verdict).
SYNTHETIC = (TRAINED, COMPOSITE)


def software() -> str:
    """``ssgan X.Y.Z``: the installed distribution's version (``unknown`` when not installed)."""
    try:
        return f"ssgan {metadata.version('ssgan')}"
    except metadata.PackageNotFoundError:
        return "ssgan unknown"


@dataclass(frozen=True)
class Provenance:
    """One picture's provenance: its IPTC ``source_type`` (full URI), the ``action`` that made it
    ("generate", "mix", "edit", "invert", "train-sample" …), the ``software`` and version, the
    generator's weight digest (:func:`ssgan.checkpoint.param_digest`; None for figures), whether
    the pixels carry the invisible watermark and its ``key_id`` (``--watermark-key``)."""

    source_type: str
    action: str
    software: str
    generator_digest: str | None = None
    watermark: bool = True
    key_id: int = 0

    def without_watermark(self) -> Provenance:
        """The same record for a picture whose pixels must stay exact: a mask (its colours name
        classes) or a difference map."""
        return replace(self, watermark=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        return cls(**{f.name: d[f.name] for f in fields(cls)})
