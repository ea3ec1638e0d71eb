"""What one output of ssgan is: the record that its metadata, its C2PA manifest and its video
container carry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from importlib import metadata
from typing import Any

#: IPTC digital source types (``Iptc4xmpExt:DigitalSourceType``): made by a trained model; a
#: user's photo combined with generated content (edits and reconstructions of a photo).
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def software() -> str:
    """``ssgan X.Y.Z``: the installed package's version (``ssgan`` alone when it is not installed)."""
    try:
        return f"ssgan {metadata.version('ssgan')}"
    except metadata.PackageNotFoundError:
        return "ssgan"


@dataclass(frozen=True)
class Provenance:
    """The provenance of one image or video: ``source_type`` (:data:`TRAINED` or
    :data:`COMPOSITE`), ``action`` ("generate", "mix", "edit", "invert", "video", …),
    ``software`` ("ssgan X.Y.Z"), ``generator_digest`` (sha256 of the generator's weights, or
    None), ``watermark`` (whether the pixels carry the invisible mark) and ``key_id`` (its key)."""

    source_type: str
    action: str
    software: str
    generator_digest: str | None = None
    watermark: bool = True
    key_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """The record of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
