"""XMP sidecars of face regions (mwg-rs): round trips, what digiKam, Lightroom and exiftool
write, the centre-and-size arithmetic, pairing regions with stored faces, hostile input."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from countenance.errors import InvalidArgument
from countenance.people.xmp import (
    MAX_SIDECAR_BYTES,
    Region,
    Sidecar,
    match_regions,
    read_sidecar,
    sidecar,
)
from countenance.types import Box

NS = (
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
    ' xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"'
    ' xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"'
    ' xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"'
)

# digiKam 8 (Exiv2): every simple property an attribute, each region an rdf:Description
DIGIKAM = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
   exif:PixelXDimension="4000"
   exif:PixelYDimension="3000">
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>People/Ada Lovelace</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions
     stDim:w="4000"
     stDim:h="3000"
     stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description
        mwg-rs:Name="Ada Lovelace"
        mwg-rs:Type="Face">
       <mwg-rs:Area
        stArea:x="0.25"
        stArea:y="0.5"
        stArea:w="0.1"
        stArea:h="0.2"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
      <rdf:li>
       <rdf:Description
        mwg-rs:Name="Charles Babbage"
        mwg-rs:Type="Face">
       <mwg-rs:Area
        stArea:x="0.7"
        stArea:y="0.3"
        stArea:w="0.05"
        stArea:h="0.1"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""

# exiftool (and XMP Toolkit writers after it): every property an element, structs as
# rdf:parseType="Resource", single quotes; the same two faces as DIGIKAM
EXIFTOOL = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='Image::ExifTool 12.76'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>

 <rdf:Description rdf:about=''
  xmlns:mwg-rs='http://www.metadataworkinggroup.com/schemas/regions/'
  xmlns:stArea='http://ns.adobe.com/xmp/sType/Area#'
  xmlns:stDim='http://ns.adobe.com/xap/1.0/sType/Dimensions#'>
  <mwg-rs:Regions rdf:parseType='Resource'>
   <mwg-rs:AppliedToDimensions rdf:parseType='Resource'>
    <stDim:h>3000</stDim:h>
    <stDim:unit>pixel</stDim:unit>
    <stDim:w>4000</stDim:w>
   </mwg-rs:AppliedToDimensions>
   <mwg-rs:RegionList>
    <rdf:Bag>
     <rdf:li rdf:parseType='Resource'>
      <mwg-rs:Area rdf:parseType='Resource'>
       <stArea:h>0.2</stArea:h>
       <stArea:unit>normalized</stArea:unit>
       <stArea:w>0.1</stArea:w>
       <stArea:x>0.25</stArea:x>
       <stArea:y>0.5</stArea:y>
      </mwg-rs:Area>
      <mwg-rs:Name>Ada Lovelace</mwg-rs:Name>
      <mwg-rs:Type>Face</mwg-rs:Type>
     </rdf:li>
     <rdf:li rdf:parseType='Resource'>
      <mwg-rs:Area rdf:parseType='Resource'>
       <stArea:h>0.1</stArea:h>
       <stArea:unit>normalized</stArea:unit>
       <stArea:w>0.05</stArea:w>
       <stArea:x>0.7</stArea:x>
       <stArea:y>0.3</stArea:y>
      </mwg-rs:Area>
      <mwg-rs:Name>Charles Babbage</mwg-rs:Name>
      <mwg-rs:Type>Face</mwg-rs:Type>
     </rdf:li>
    </rdf:Bag>
   </mwg-rs:RegionList>
  </mwg-rs:Regions>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>"""

TWO_FACES = (
    Region(Box(800, 1200, 1200, 1800), "Ada Lovelace"),
    Region(Box(2700, 750, 2900, 1050), "Charles Babbage"),
)

# Lightroom Classic: no xpacket wrapper, the document id and the regions in one description,
# a Focus region and a Pet region next to the faces, one face not yet named
LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
   xmpMM:DocumentID="xmp.did:5c1f0a8e-7b2d-4f33-9a41-0d6e2b7c9f10">
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="6000" stDim:h="4000" stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description mwg-rs:Rotation="0.00000" mwg-rs:Name="Grace Hopper" mwg-rs:Type="Face">
       <mwg-rs:Area stArea:h="0.15" stArea:w="0.1" stArea:x="0.5" stArea:y="0.4"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
      <rdf:li>
       <rdf:Description mwg-rs:Type="Focus" mwg-rs:Name="AF point">
       <mwg-rs:Area stArea:x="0.5" stArea:y="0.5" stArea:w="0.01" stArea:h="0.01"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
      <rdf:li>
       <rdf:Description mwg-rs:Type="Pet" mwg-rs:Name="Rex">
       <mwg-rs:Area stArea:x="0.8" stArea:y="0.8" stArea:w="0.1" stArea:h="0.1"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
      <rdf:li>
       <rdf:Description mwg-rs:Type="Face">
       <mwg-rs:Area stArea:x="0.2" stArea:y="0.25" stArea:w="0.05" stArea:h="0.075"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"""


def packet(
    areas: str, dims: str = '<mwg-rs:AppliedToDimensions stDim:w="1000" stDim:h="500"/>'
) -> bytes:
    """A bare rdf:RDF sidecar with ``areas`` as its RegionList's rdf:li items."""
    return (
        f'<rdf:RDF {NS}><rdf:Description rdf:about="">'
        f'<mwg-rs:Regions rdf:parseType="Resource">{dims}'
        f"<mwg-rs:RegionList><rdf:Bag>{areas}</rdf:Bag></mwg-rs:RegionList>"
        "</mwg-rs:Regions></rdf:Description></rdf:RDF>"
    ).encode()


def face(x: str, y: str, w: str, h: str, name: str = "Ada", unit: str = "normalized") -> str:
    return (
        f'<rdf:li><rdf:Description mwg-rs:Type="Face" mwg-rs:Name="{name}">'
        f'<mwg-rs:Area stArea:x="{x}" stArea:y="{y}" stArea:w="{w}" stArea:h="{h}"'
        f' stArea:unit="{unit}"/></rdf:Description></rdf:li>'
    )


# writing and reading back ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"), [(1000, 500), (4000, 3000), (641, 479), (3000, 4000), (20_000, 15)]
)
def test_round_trip_keeps_boxes_within_a_pixel(width: int, height: int) -> None:
    boxes = [
        Box(0, 0, width, height),
        Box(0, 0, 1, 1),
        Box(width // 3, height // 7, width // 3 + max(1, width // 5), height - 1),
        Box(width - 3, height - 2, width, height) if width > 3 and height > 2 else Box(0, 0, 1, 1),
    ]
    regions = [Region(box, f"person {i}") for i, box in enumerate(boxes)]
    found = read_sidecar(sidecar(width, height, regions))
    assert found.dimensions == (width, height)
    assert [r.name for r in found.regions] == [r.name for r in regions]
    for got, want in zip(found.regions, regions, strict=True):
        assert all(
            abs(a - b) <= 1 for a, b in zip(got.box.as_list(), want.box.as_list(), strict=True)
        )


def test_round_trip_keeps_names_with_xml_specials_and_unicode() -> None:
    names = ['<Ada & "Bob">\'s</rdf:li>', "Zoë Ωmega 李小龍 🙂", "&amp; literally", None]
    regions = [Region(Box(10 * i, 0, 10 * i + 10, 10), name) for i, name in enumerate(names)]
    data = sidecar(100, 100, regions, document='sha256:"<&>"')
    assert b"<Ada" not in data and "李小龍".encode() in data  # escaped, and plain UTF-8
    found = read_sidecar(data)
    assert [r.name for r in found.regions] == names
    assert found.document == 'sha256:"<&>"'
    assert found.skipped == {}


def test_sidecar_is_a_complete_packet_of_face_regions() -> None:
    data = sidecar(1000, 500, [Region(Box(400, 150, 600, 350))], document="sha256:ab12")
    text = data.decode("utf-8")
    assert text.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert text.rstrip().endswith('<?xpacket end="w"?>')
    root = ET.fromstring(data)  # plain XML any reader takes
    assert root.tag == "{adobe:ns:meta/}xmpmeta"
    rs = "{http://www.metadataworkinggroup.com/schemas/regions/}"
    area = "{http://ns.adobe.com/xmp/sType/Area#}"
    (region,) = root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li")
    (description,) = region
    assert description.get(f"{rs}Type") == "Face"
    assert f"{rs}Name" not in description.attrib  # unnamed: no Name at all
    (box,) = description
    assert [box.get(f"{area}{k}") for k in "xywh"] == [
        "0.500000",
        "0.500000",
        "0.200000",
        "0.400000",
    ]
    assert box.get(f"{area}unit") == "normalized"
    assert 'xmpMM:DocumentID="sha256:ab12"' in text


def test_no_regions_and_no_document_write_an_empty_bag() -> None:
    found = read_sidecar(sidecar(10, 10, []))
    assert found == Sidecar(None, (10, 10), ())


# what other programs write --------------------------------------------------------------------


def test_reads_digikam_attribute_form() -> None:
    found = read_sidecar(DIGIKAM.encode())
    assert found.dimensions == (4000, 3000)
    assert found.regions == TWO_FACES
    assert found.document is None


def test_reads_exiftool_element_form_the_same() -> None:
    found = read_sidecar(EXIFTOOL.encode())
    assert found.dimensions == (4000, 3000)
    assert found.regions == TWO_FACES


def test_reads_lightroom_without_wrapper_and_skips_regions_that_are_not_faces() -> None:
    found = read_sidecar(LIGHTROOM.encode())
    assert found.document == "xmp.did:5c1f0a8e-7b2d-4f33-9a41-0d6e2b7c9f10"
    assert found.regions == (
        Region(Box(2700, 1300, 3300, 1900), "Grace Hopper"),
        Region(Box(1050, 850, 1350, 1150), None),
    )
    assert found.skipped == {}  # the Focus and Pet regions are not bad, only not faces


def test_reads_bare_rdf_root_with_split_descriptions_and_wrapped_structs() -> None:
    # exiftool -xmp writes one rdf:Description per schema; structs may wrap an rdf:Description
    data = f"""<rdf:RDF {NS} xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/">
      <rdf:Description rdf:about=""><xmpMM:DocumentID>sha256:0f0f</xmpMM:DocumentID>
      </rdf:Description>
      <rdf:Description rdf:about="">
       <mwg-rs:Regions><rdf:Description>
        <mwg-rs:AppliedToDimensions><rdf:Description>
         <stDim:w>1000</stDim:w><stDim:h>500</stDim:h>
        </rdf:Description></mwg-rs:AppliedToDimensions>
        <mwg-rs:RegionList><rdf:Bag>
         <rdf:li><rdf:Description mwg-rs:Type="Face">
          <mwg-rs:Name>  Ada
             Lovelace </mwg-rs:Name>
          <mwg-rs:Area><rdf:Description stArea:x="0.5" stArea:y="0.5">
           <stArea:w>0.2</stArea:w><stArea:h>0.4</stArea:h>
          </rdf:Description></mwg-rs:Area>
         </rdf:Description></rdf:li>
        </rdf:Bag></mwg-rs:RegionList>
       </rdf:Description></mwg-rs:Regions>
      </rdf:Description>
    </rdf:RDF>""".encode()
    found = read_sidecar(data)
    assert found.document == "sha256:0f0f"
    assert found.regions == (Region(Box(400, 150, 600, 350), "Ada Lovelace"),)


def test_a_packet_without_regions_reads_as_empty() -> None:
    data = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF ' + NS.encode() + b"/></x:xmpmeta>"
    assert read_sidecar(data) == Sidecar(None, None, ())


# the arithmetic -------------------------------------------------------------------------------


def test_normalised_centre_and_size_become_a_pixel_box() -> None:
    found = read_sidecar(packet(face("0.5", "0.5", "0.2", "0.4")))
    assert found.regions == (Region(Box(400, 150, 600, 350), "Ada"),)


def test_given_size_places_the_fractions_and_stands_in_for_missing_dimensions() -> None:
    data = packet(face("0.5", "0.5", "0.2", "0.4"))
    found = read_sidecar(data, width=2000, height=1000)  # the photo as stored here
    assert found.regions[0].box == Box(800, 300, 1200, 700)
    assert found.dimensions == (1000, 500)  # what the sidecar said, for the caller to compare
    bare = packet(face("0.5", "0.5", "0.2", "0.4"), dims="")
    assert read_sidecar(bare, width=1000, height=500).regions[0].box == Box(400, 150, 600, 350)
    with pytest.raises(InvalidArgument, match="AppliedToDimensions"):
        read_sidecar(bare)
    with pytest.raises(InvalidArgument, match="both"):
        read_sidecar(data, width=1000)


def test_dimensions_in_other_units_are_not_used() -> None:
    inches = '<mwg-rs:AppliedToDimensions stDim:w="10" stDim:h="5" stDim:unit="inch"/>'
    with pytest.raises(InvalidArgument, match="AppliedToDimensions"):
        read_sidecar(packet(face("0.5", "0.5", "0.2", "0.4"), dims=inches))


def test_regions_over_the_edge_are_cut_to_the_image() -> None:
    found = read_sidecar(packet(face("0.95", "0.05", "0.2", "0.2")))
    assert found.regions[0].box == Box(850, 0, 1000, 75)


# bad regions are skipped, the rest kept -------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (face("nan", "0.5", "0.2", "0.2"), "bad_area"),
        (face("0.5", "inf", "0.2", "0.2"), "bad_area"),
        (face("0.5", "0.5", "1e999", "0.2"), "bad_area"),
        (face("1.05", "0.5", "0.2", "0.2"), "bad_area"),  # would still overlap the image
        (face("0.5", "0.5", "1.5", "0.2"), "bad_area"),
        (face("0.5", "0.5", "0.2", "-0.1"), "bad_area"),
        (face("0,5", "0.5", "0.2", "0.2"), "bad_area"),
        (face("1_0", "0.5", "0.2", "0.2"), "bad_area"),
        (face("0.5", "0.5", "0", "0.2"), "bad_area"),
        (face("0.5", "0.5", "", "0.2"), "bad_area"),
        (face("0.5", "0.5", "0.2", "0.2", unit="pixel"), "bad_area"),
        ('<rdf:li><rdf:Description mwg-rs:Type="Face" mwg-rs:Name="x"/></rdf:li>', "bad_area"),
        (face("0.5", "0.5", "0.2", "0.2", name="a" * 201), "bad_name"),
        # XML 1.0 carries C1 controls and DEL, which no name holds
        (face("0.5", "0.5", "0.2", "0.2", name="Ada&#x9b;31m"), "bad_name"),
        (face("0.5", "0.5", "0.2", "0.2", name="Ada\x7f[31m"), "bad_name"),
    ],
)
def test_one_bad_region_is_skipped_and_counted(item: str, reason: str) -> None:
    good = face("0.5", "0.5", "0.2", "0.4", name="Kept")
    found = read_sidecar(packet(good + item + good))
    assert [r.name for r in found.regions] == ["Kept", "Kept"]
    assert found.skipped == {reason: 1}


def test_names_of_two_hundred_characters_are_kept() -> None:
    found = read_sidecar(packet(face("0.5", "0.5", "0.2", "0.2", name="é" * 200)))
    assert found.regions[0].name == "é" * 200


# hostile input --------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">&lol9;</rdf:RDF>"""


def test_xml_bomb_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="DTD or entities"):
        read_sidecar(BILLION_LAUGHS)


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE r SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
    ],
)
def test_external_entities_are_refused_unread(doctype: str) -> None:
    data = packet(face("0.5", "0.5", "0.2", "0.2", name="&xxe;"))
    with pytest.raises(InvalidArgument, match="DTD or entities") as caught:
        read_sidecar(doctype.encode() + data)
    assert "root:" not in str(caught.value)


def test_oversized_input_is_refused_before_parsing() -> None:
    data = b"<rdf:RDF>" + b" " * MAX_SIDECAR_BYTES  # not even well-formed: never parsed
    with pytest.raises(InvalidArgument, match="bytes, over"):
        read_sidecar(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00garbage",
        b"",
        b"<rdf:RDF",
        "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\udcff".encode(
            "utf-8", "surrogatepass"
        ),
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>&#xD800;</x:xmpmeta>",  # a lone surrogate
    ],
)
def test_input_that_is_not_xml_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="not well-formed"):
        read_sidecar(data)


def test_xml_that_is_not_xmp_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="root"):
        read_sidecar(b"<html><body>hello</body></html>")
    with pytest.raises(InvalidArgument, match="bytes"):
        read_sidecar("<rdf:RDF/>")  # type: ignore[arg-type]


def test_more_than_a_thousand_regions_is_refused() -> None:
    one = face("0.5", "0.5", "0.1", "0.1")
    assert len(read_sidecar(packet(one * 1000)).regions) == 1000
    with pytest.raises(InvalidArgument, match="1,001 regions"):
        read_sidecar(packet(one * 1001))


def test_writer_refuses_what_would_not_read_back() -> None:
    ok = Region(Box(0, 0, 5, 5), "Ada")
    with pytest.raises(InvalidArgument, match="nothing inside"):
        sidecar(100, 100, [ok, Region(Box(200, 200, 300, 300), "Off the photo")])
    with pytest.raises(InvalidArgument, match="surrogates"):
        sidecar(100, 100, [Region(Box(0, 0, 5, 5), "Ada \ud800")])
    with pytest.raises(InvalidArgument, match="200 characters"):
        sidecar(100, 100, [Region(Box(0, 0, 5, 5), "a" * 201)])
    with pytest.raises(InvalidArgument, match="at most 1,000"):
        sidecar(100, 100, [ok] * 1001)
    with pytest.raises(InvalidArgument, match="width"):
        sidecar(0, 100, [ok])
    with pytest.raises(InvalidArgument, match="document"):
        sidecar(100, 100, [ok], document="sha256:\x00")


# pairing regions with stored faces ------------------------------------------------------------


def test_match_pairs_one_to_one_best_overlap_first() -> None:
    left, right = Box(0, 0, 100, 100), Box(100, 0, 200, 100)
    # "between" overlaps left best (IoU 0.82) but "exact" overlaps it more (IoU 1.0)
    exact = Region(Box(0, 0, 100, 100), "exact")
    between = Region(Box(10, 0, 110, 100), "between")
    on_right = Region(Box(105, 0, 200, 100), "right")
    matched = match_regions([left, right], [between, on_right, exact])
    assert matched == [(0, exact), (1, on_right)]


def test_match_leaves_faces_below_the_threshold_unpaired() -> None:
    stored = [Box(0, 0, 100, 100)]
    half = Region(Box(50, 0, 150, 100), "half")  # IoU 50/150 = 1/3
    assert match_regions(stored, [half]) == []
    assert match_regions(stored, [half], min_iou=0.3) == [(0, half)]
    assert match_regions(stored, [Region(Box(500, 500, 600, 600), "far")], min_iou=0.01) == []
    with pytest.raises(InvalidArgument, match="min_iou"):
        match_regions(stored, [half], min_iou=0.0)


def test_match_gives_each_region_to_one_face_only() -> None:
    twins = [Box(0, 0, 100, 100), Box(0, 0, 100, 100)]
    only = Region(Box(0, 0, 100, 100), "only")
    assert match_regions(twins, [only]) == [(0, only)]


def test_imported_sidecar_names_stored_faces() -> None:
    stored = [Box(2690, 1310, 3310, 1905), Box(10, 10, 50, 50)]
    found = read_sidecar(LIGHTROOM.encode(), width=6000, height=4000)
    named = [(i, r.name) for i, r in match_regions(stored, found.regions) if r.name]
    assert named == [(0, "Grace Hopper")]
