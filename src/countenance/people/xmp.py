"""Face regions and names in XMP sidecars, as the Metadata Working Group's regions schema has
them (``mwg-rs``), so that names made here open in digiKam, Lightroom, Immich or PhotoPrism,
and names made there come in here.

A region is a box and an optional name. In a sidecar, ``mwg-rs:Regions`` holds the pixel size
the regions apply to (``mwg-rs:AppliedToDimensions``) and a ``mwg-rs:RegionList`` bag of
regions, each of ``mwg-rs:Type`` ``Face``, ``Pet``, ``Focus`` or ``BarCode``, with an
``mwg-rs:Area`` whose ``stArea:x``/``stArea:y`` are the region's *centre* and ``stArea:w``/
``stArea:h`` its size, all fractions (0..1) of the image's width and height. Here a region's
box is :class:`~countenance.types.Box` pixels, x2/y2 exclusive.

Only bytes go in and out: the caller reads and writes the ``photo.jpg.xmp`` files.

Example::

    data = sidecar(1000, 500, [Region(Box(400, 150, 600, 350), "Ada Lovelace")], document=sha)
    found = read_sidecar(data)
    found.regions[0].box                      # Box(400, 150, 600, 350)
    match_regions([Box(398, 152, 601, 349)], found.regions)   # [(0, Region(..., "Ada Lovelace"))]

Reading is strict about the document and lenient about its regions: input that is not XMP,
an XML bomb (any DTD or entity is refused, so external entities are never fetched), more
than 4 MiB or more than 1,000 regions raises :class:`~countenance.errors.InvalidArgument`;
one bad region (numbers that are not finite, outside [0, 1] or empty, an area not in
``normalized`` units, a name of more than 200 characters or with control characters) is
skipped and counted in :attr:`Sidecar.skipped`, and the others are kept.
"""

from __future__ import annotations

import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree

from countenance.errors import InvalidArgument
from countenance.types import Box

__all__ = [
    "MAX_NAME",
    "MAX_REGIONS",
    "MAX_SIDECAR_BYTES",
    "Region",
    "Sidecar",
    "match_regions",
    "read_sidecar",
    "sidecar",
]

MAX_SIDECAR_BYTES = 4 * 1024 * 1024  # a sidecar of names is a few KiB; refused before parsing
MAX_REGIONS = 1_000
MAX_NAME = 200  # characters, after runs of whitespace are made one space
MAX_DOCUMENT = 256
MAX_SIDE = 1_000_000  # pixels: AppliedToDimensions beyond this are not a photo's

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
XML = "{http://www.w3.org/XML/1998/namespace}"
X = "{adobe:ns:meta/}"
MWG_RS = "{http://www.metadataworkinggroup.com/schemas/regions/}"
ST_AREA = "{http://ns.adobe.com/xmp/sType/Area#}"
ST_DIM = "{http://ns.adobe.com/xap/1.0/sType/Dimensions#}"
XMP_MM = "{http://ns.adobe.com/xap/1.0/mm/}"

# An XML Schema decimal or double, as XMP writes Real: Python's float() also takes "nan",
# "infinity", "1_000" and surrounding blanks of any kind, none of which a sidecar means.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

Fields = dict[str, ET.Element | str]


@dataclass(frozen=True, slots=True)
class Region:
    """One face region: ``box`` in pixels of the image, and the person's ``name`` or None.

    Example: ``Region(Box(400, 150, 600, 350), "Ada Lovelace")``.
    """

    box: Box
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Sidecar:
    """What :func:`read_sidecar` found in one sidecar.

    ``document`` is its ``xmpMM:DocumentID`` (None when absent or unusable); ``dimensions``
    its ``AppliedToDimensions`` as ``(width, height)`` pixels (None when absent or unusable);
    ``regions`` its face regions in document order; ``skipped`` counts the face regions left
    out, by reason: ``bad_area`` or ``bad_name``. Regions of other types (pets, focus points,
    bar codes) are not faces and are not counted.
    """

    document: str | None
    dimensions: tuple[int, int] | None
    regions: tuple[Region, ...]
    skipped: dict[str, int] = field(default_factory=dict)


class _BadRegion(Exception):
    """One region that cannot be used; ``reason`` is its key in :attr:`Sidecar.skipped`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# writing --------------------------------------------------------------------------------------


def sidecar(
    width: int, height: int, regions: Sequence[Region], *, document: str | None = None
) -> bytes:
    """A complete XMP packet (UTF-8) holding ``regions`` as ``mwg-rs`` face regions of a
    ``width`` x ``height`` photo, and ``document`` (e.g. ``"sha256:..."``) as its
    ``xmpMM:DocumentID``. An unnamed region is written with no ``mwg-rs:Name``.

    Boxes are cut to the photo; a box with nothing left, a name :func:`read_sidecar` would
    skip, or more than 1,000 regions raise InvalidArgument, so that what is written reads back.

    Example: ``Path("a.jpg.xmp").write_bytes(sidecar(1000, 500, [Region(box, "Ada")]))``.
    """
    width, height = _side(width, "width"), _side(height, "height")
    if len(regions) > MAX_REGIONS:
        raise InvalidArgument(
            f"a sidecar holds at most {MAX_REGIONS:,} regions, not {len(regions):,}"
        )
    items = [_item(region, width, height) for region in regions]
    try:
        doc = _text(document, MAX_DOCUMENT) if document is not None else None
    except _BadRegion as exc:
        raise InvalidArgument(f"document {document!r}: {exc}") from None
    about = f'\n    xmpMM:DocumentID="{_attr(doc)}"' if doc else ""
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="countenance">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"\n'
        '    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"\n'
        '    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"\n'
        f'    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"{about}>\n'
        '   <mwg-rs:Regions rdf:parseType="Resource">\n'
        f'    <mwg-rs:AppliedToDimensions stDim:w="{width}" stDim:h="{height}"'
        ' stDim:unit="pixel"/>\n'
        "    <mwg-rs:RegionList>\n"
        "     <rdf:Bag>\n"
        f"{''.join(items)}"
        "     </rdf:Bag>\n"
        "    </mwg-rs:RegionList>\n"
        "   </mwg-rs:Regions>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    )
    return packet.encode("utf-8")


def _item(region: Region, width: int, height: int) -> str:
    box = region.box.clip(width, height)
    if box.width <= 0 or box.height <= 0:
        raise InvalidArgument(f"{region.box} has nothing inside a {width}x{height} photo")
    try:
        name = _text(region.name, MAX_NAME) if region.name is not None else None
    except _BadRegion as exc:
        raise InvalidArgument(f"name {region.name!r}: {exc}") from None
    named = f' mwg-rs:Name="{_attr(name)}"' if name else ""
    x, y = (box.x1 + box.x2) / (2 * width), (box.y1 + box.y2) / (2 * height)
    w, h = box.width / width, box.height / height
    # six decimals: a pixel's fraction of any side up to MAX_SIDE / 4 reads back exactly
    return (
        "      <rdf:li>\n"
        f'       <rdf:Description{named} mwg-rs:Type="Face">\n'
        f'        <mwg-rs:Area stArea:x="{x:.6f}" stArea:y="{y:.6f}" stArea:w="{w:.6f}"'
        f' stArea:h="{h:.6f}" stArea:unit="normalized"/>\n'
        "       </rdf:Description>\n"
        "      </rdf:li>\n"
    )


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;", "'": "&apos;"})


# reading --------------------------------------------------------------------------------------


def read_sidecar(data: bytes, *, width: int | None = None, height: int | None = None) -> Sidecar:
    """The document id, applied dimensions and face regions of one XMP sidecar.

    ``data`` is an XMP packet, with or without its ``<?xpacket?>`` wrapper, whose root is
    ``x:xmpmeta`` or ``rdf:RDF``; properties may be attributes or elements, as digiKam,
    Lightroom and exiftool each write them. Boxes are pixels of a ``width`` x ``height``
    image when those are given (the normalised areas are fractions of whatever size the
    photo is stored at), else of the sidecar's ``AppliedToDimensions``; they are cut to the
    image. A region whose ``mwg-rs:Type`` is not ``Face`` (or is missing) is left out.

    Raises InvalidArgument for input that is not XMP, a DTD or entity (XML bombs, external
    entities), more than 4 MiB, more than 1,000 regions, or face regions with no size to
    apply them to; bad single regions are skipped and counted (see :class:`Sidecar`).

    Example: ``read_sidecar(Path("a.jpg.xmp").read_bytes(), width=1000, height=500)``.
    """
    given = None
    if width is not None or height is not None:
        if width is None or height is None:
            raise InvalidArgument("give both width and height, or neither")
        given = (_side(width, "width"), _side(height, "height"))
    descriptions = _descriptions(_parse(data))
    document = _document(descriptions)
    regions = [d[f"{MWG_RS}Regions"] for d in descriptions if f"{MWG_RS}Regions" in d]
    if not regions or not isinstance(regions[0], ET.Element):
        return Sidecar(document, None, ())
    found = _fields(regions[0])
    dimensions = _dimensions(found.get(f"{MWG_RS}AppliedToDimensions"))
    items = _items(found.get(f"{MWG_RS}RegionList"))
    faces = [i for i in items if (_value(i.get(f"{MWG_RS}Type")) or "").strip().lower() == "face"]
    size = given or dimensions
    if size is None:
        if not faces:
            return Sidecar(document, None, ())
        raise InvalidArgument(
            "the sidecar has no usable mwg-rs:AppliedToDimensions (pixel w and h) to place its"
            " regions by: give the photo's width and height"
        )
    kept: list[Region] = []
    skipped: dict[str, int] = {}
    for item in faces:
        try:
            kept.append(_region(item, *size))
        except _BadRegion as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
    return Sidecar(document, dimensions, tuple(kept), skipped)


def _parse(data: bytes) -> ET.Element:
    if not isinstance(data, bytes | bytearray):
        raise InvalidArgument(f"a sidecar is bytes, not {type(data).__name__}")
    if len(data) > MAX_SIDECAR_BYTES:
        raise InvalidArgument(
            f"the sidecar is {len(data):,} bytes, over the {MAX_SIDECAR_BYTES:,} a sidecar may be"
        )
    try:
        root = defusedxml.ElementTree.fromstring(bytes(data), forbid_dtd=True)
    except defusedxml.DefusedXmlException:
        raise InvalidArgument(
            "the sidecar declares a DTD or entities, which XMP never needs (refused: they are"
            " how XML bombs and external entities work)"
        ) from None
    except ET.ParseError as exc:
        raise InvalidArgument(f"the sidecar is not well-formed XML: {exc}") from None
    if root.tag not in (f"{X}xmpmeta", f"{X}xapmeta", f"{RDF}RDF"):
        raise InvalidArgument(f"the sidecar's root is {root.tag!r}, not x:xmpmeta or rdf:RDF")
    return root


def _descriptions(root: ET.Element) -> list[Fields]:
    """The properties of each top-level ``rdf:Description`` (exiftool writes one per schema)."""
    rdf = root if root.tag == f"{RDF}RDF" else root.find(f"{RDF}RDF")
    if rdf is None:
        return []
    return [_fields(node) for node in rdf if node.tag == f"{RDF}Description"]


def _fields(node: ET.Element) -> Fields:
    """The properties of an RDF struct: ``node``'s own attributes and child elements, and
    those of the ``rdf:Description`` it wraps (``<mwg-rs:Area stArea:x=.../>``,
    ``rdf:parseType="Resource"`` and ``<rdf:Description>`` forms alike). The first of a name
    wins. One level only: RDF never nests a description directly in a description."""
    fields: Fields = {}
    for wrapper in (node, *(c for c in node if c.tag == f"{RDF}Description")):
        for key, value in wrapper.attrib.items():
            if not key.startswith((RDF, XML)):
                fields.setdefault(key, value)
        for child in wrapper:
            if child.tag != f"{RDF}Description":
                fields.setdefault(child.tag, child)
    return fields


def _value(value: ET.Element | str | None) -> str | None:
    """A simple property's text: an attribute's value, or a childless element's text."""
    if value is None or isinstance(value, str):
        return value
    return None if len(value) else (value.text or "")


def _document(descriptions: list[Fields]) -> str | None:
    for fields in descriptions:
        raw = _value(fields.get(f"{XMP_MM}DocumentID"))
        if raw is not None:
            try:
                return _text(raw, MAX_DOCUMENT)
            except _BadRegion:
                return None  # an id that cannot be ours matches no photo: as good as none
    return None


def _dimensions(value: ET.Element | str | None) -> tuple[int, int] | None:
    if not isinstance(value, ET.Element):
        return None
    fields = _fields(value)
    unit = _value(fields.get(f"{ST_DIM}unit"))
    if unit is not None and unit.strip().lower() not in ("pixel", "pixels"):
        return None
    try:
        w, h = (_number(fields.get(f"{ST_DIM}{k}")) for k in ("w", "h"))
    except _BadRegion:
        return None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE and w.is_integer() and h.is_integer()):
        return None
    return int(w), int(h)


def _items(value: ET.Element | str | None) -> list[Fields]:
    if not isinstance(value, ET.Element):
        return []
    bag = next((c for c in value if c.tag in (f"{RDF}Bag", f"{RDF}Seq")), None)
    lis = [] if bag is None else [c for c in bag if c.tag == f"{RDF}li"]
    if len(lis) > MAX_REGIONS:
        raise InvalidArgument(
            f"the sidecar lists {len(lis):,} regions, over the {MAX_REGIONS:,} allowed"
        )
    return [_fields(li) for li in lis]


def _region(fields: Fields, width: int, height: int) -> Region:
    area = fields.get(f"{MWG_RS}Area")
    if not isinstance(area, ET.Element):
        raise _BadRegion("bad_area", "no mwg-rs:Area")
    parts = _fields(area)
    unit = _value(parts.get(f"{ST_AREA}unit"))
    if unit is not None and unit.strip() != "normalized":
        raise _BadRegion("bad_area", f"stArea:unit {unit!r}, not 'normalized'")
    x, y, w, h = (_number(parts.get(f"{ST_AREA}{k}")) for k in ("x", "y", "w", "h"))
    if not all(0.0 <= v <= 1.0 for v in (x, y, w, h)):
        raise _BadRegion("bad_area", "an stArea value outside [0, 1]")
    box = Box(
        round((x - w / 2) * width),
        round((y - h / 2) * height),
        round((x + w / 2) * width),
        round((y + h / 2) * height),
    ).clip(width, height)
    if box.width <= 0 or box.height <= 0:
        raise _BadRegion("bad_area", "an area with nothing inside the image")
    raw = fields.get(f"{MWG_RS}Name")
    name = _value(raw)
    if raw is not None and name is None:
        raise _BadRegion("bad_name", "mwg-rs:Name is not text")
    return Region(box, _text(name, MAX_NAME, reason="bad_name") if name is not None else None)


def _number(value: ET.Element | str | None) -> float:
    text = (_value(value) or "").strip(" \t\r\n")
    if not _NUMBER.fullmatch(text):
        raise _BadRegion("bad_area", f"{text!r} is not a number")
    number = float(text)
    if not math.isfinite(number):
        raise _BadRegion("bad_area", f"{text!r} is not a finite number")
    return number


# shared ---------------------------------------------------------------------------------------


def _text(value: str, limit: int, *, reason: str = "bad_name") -> str | None:
    """``value`` with each run of whitespace made one space, None when nothing is left; raises
    _BadRegion past ``limit`` characters or for characters XML 1.0 cannot carry or that no
    name holds (control characters, lone surrogates, U+FFFE/U+FFFF)."""
    text = " ".join(value.split())
    if len(text) > limit:
        raise _BadRegion(reason, f"longer than {limit} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") or c in "\ufffe\uffff" for c in text):
        raise _BadRegion(reason, "holds control characters or lone surrogates")
    return text or None


def _side(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise InvalidArgument(f"{what} must be a whole number of pixels from 1 to {MAX_SIDE:,}")
    return value


# matching -------------------------------------------------------------------------------------


def match_regions(
    stored: Sequence[Box], regions: Sequence[Region], *, min_iou: float = 0.5
) -> list[tuple[int, Region]]:
    """Pairs of ``(index into stored, region)``: each stored face box with at most one region
    and each region with at most one box, best intersection-over-union first, none below
    ``min_iou`` (in (0, 1]). Sorted by index. Import gives each paired face the region's name.

    Example: ``match_regions([Box(0, 0, 10, 10)], [Region(Box(1, 0, 10, 10), "Ada")])`` is
    ``[(0, Region(Box(1, 0, 10, 10), "Ada"))]`` (IoU 0.9).
    """
    if not 0.0 < min_iou <= 1.0:
        raise InvalidArgument(f"min_iou must be in (0, 1], not {min_iou}")
    pairs = sorted(
        (-iou, i, j)
        for i, box in enumerate(stored)
        for j, region in enumerate(regions)
        if (iou := _iou(box, region.box)) >= min_iou
    )
    used_boxes: set[int] = set()
    used_regions: set[int] = set()
    matched: list[tuple[int, Region]] = []
    for _, i, j in pairs:
        if i not in used_boxes and j not in used_regions:
            used_boxes.add(i)
            used_regions.add(j)
            matched.append((i, regions[j]))
    return sorted(matched, key=lambda pair: pair[0])


def _iou(a: Box, b: Box) -> float:
    inter = Box(max(a.x1, b.x1), max(a.y1, b.y1), min(a.x2, b.x2), min(a.y2, b.y2))
    overlap = inter.area if inter.width > 0 and inter.height > 0 else 0
    union = a.area + b.area - overlap
    return overlap / union if union > 0 else 0.0
