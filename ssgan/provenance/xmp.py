"""The XMP packet of a :class:`~ssgan.provenance.record.Provenance` (what PNG's iTXt
``XML:com.adobe.xmp``, JPEG's APP1, WebP's ``XMP `` chunk and, in ssgan's GIFs, the comment
extension hold), and reading one back.

The packet is one ``rdf:Description`` with the IPTC ``Iptc4xmpExt:DigitalSourceType``, the
``xmp:CreatorTool`` (software and version) and ssgan's own properties (namespace :data:`NS`):
``action``, ``generatorDigest``, ``watermark``, ``watermarkKeyId``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

from ssgan.provenance.record import Provenance

NS = "urn:ssgan:provenance:1"
_IPTC = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
_XMP = "http://ns.adobe.com/xap/1.0/"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
#: XMP property (namespace, name) → Provenance field.
_FIELDS = {(_IPTC, "DigitalSourceType"): "source_type", (_XMP, "CreatorTool"): "software",
           (NS, "action"): "action", (NS, "generatorDigest"): "generator_digest",
           (NS, "watermark"): "watermark", (NS, "watermarkKeyId"): "key_id"}
_PREFIX = {_IPTC: "Iptc4xmpExt", _XMP: "xmp", NS: "ssgan"}
#: Packets larger than this are not parsed (no sane XMP is that big).
MAX_BYTES = 1 << 20


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def packet(prov: Provenance) -> bytes:
    """The XMP packet (UTF-8) recording ``prov``; a missing digest is left out."""
    values = prov.to_dict()
    attrs = "".join(f"\n    {_PREFIX[ns]}:{name}={quoteattr(_text(values[field]))}"
                    for (ns, name), field in _FIELDS.items() if values[field] is not None)
    xmlns = "".join(f'\n    xmlns:{p}="{ns}"' for ns, p in _PREFIX.items())
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n <rdf:RDF xmlns:rdf="{_RDF}">\n'
            f'  <rdf:Description rdf:about=""{xmlns}{attrs}/>\n </rdf:RDF>\n</x:xmpmeta>\n'
            f'<?xpacket end="r"?>').encode()


def parse(data: bytes | str) -> dict[str, str]:
    """The provenance properties an XMP packet holds (Provenance field → text), whether written as
    attributes or as elements of any ``rdf:Description``; {} when there are none or the packet is
    not XML."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        return {}
    try:
        root = ET.fromstring(raw.strip(b"\x00").replace(b"\xef\xbb\xbf", b""))
    except ET.ParseError:
        return {}
    out: dict[str, str] = {}
    for desc in root.iter(f"{{{_RDF}}}Description"):
        for (ns, name), field in _FIELDS.items():
            key = f"{{{ns}}}{name}"
            child = desc.find(key)
            value = desc.get(key, child.text if child is not None else None)
            if value is not None:
                out[field] = value.strip()
    return out


def to_provenance(found: dict[str, str]) -> Provenance | None:
    """A :class:`Provenance` from :func:`parse`'s output when ssgan wrote every field but the
    optional digest; None otherwise (another tool's XMP)."""
    need = {"source_type", "software", "action", "watermark", "key_id"}
    if not need <= found.keys():
        return None
    try:
        key_id = int(found["key_id"])
    except ValueError:
        return None
    return Provenance(found["source_type"], found["action"], found["software"],
                      found.get("generator_digest"), found["watermark"] == "true", key_id)
