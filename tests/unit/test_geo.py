"""EXIF GPS to ISO 3166 codes, offline, on synthetic photos written with Pillow."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from typing import Any

import pytest
from PIL import Image, TiffImagePlugin

from countenance.errors import InvalidArgument
from countenance.governance.geo import (
    country_of,
    exif_gps,
    photo_jurisdiction,
    subdivision_of,
)

MONTREAL = (45.5, -73.57)
CHICAGO = (41.88, -87.63)
PARIS = (48.8566, 2.3522)
SYDNEY = (-33.8688, 151.2093)
BUENOS_AIRES = (-34.6037, -58.3816)
POINT_NEMO = (-48.8767, -123.3933)  # the ocean's pole of inaccessibility, 2,688 km from land


def _dms(value: float) -> tuple[float, float, float]:
    """Unsigned degrees, minutes, seconds of ``value``, as EXIF stores them."""
    value = abs(value)
    degrees = math.floor(value)
    minutes = math.floor((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 2)
    return float(degrees), float(minutes), seconds


def _gps(lat: float, lon: float) -> dict[int, Any]:
    return {
        1: "N" if lat >= 0 else "S",
        2: _dms(lat),
        3: "E" if lon >= 0 else "W",
        4: _dms(lon),
    }


def _photo(gps: dict[int, Any] | None = None, fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", (16, 16), (200, 120, 80))
    buffer = io.BytesIO()
    if gps is None:
        image.save(buffer, fmt)
    else:
        exif = Image.Exif()
        exif[0x8825] = gps  # Pillow writes a dict under the GPS pointer as the GPS IFD
        image.save(buffer, fmt, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("point", [MONTREAL, CHICAGO, SYDNEY, BUENOS_AIRES])
def test_exif_gps_reads_back_what_was_written_with_signs_from_refs(
    point: tuple[float, float],
) -> None:
    found = exif_gps(_photo(_gps(*point)))
    assert found is not None
    assert found == pytest.approx(point, abs=1e-5)


def test_the_written_gps_block_is_real_exif() -> None:
    # Guards the helper: the tags land in the GPS IFD, as a camera writes them.
    with Image.open(io.BytesIO(_photo(_gps(*SYDNEY)))) as image:
        gps = image.getexif().get_ifd(0x8825)
    assert gps[1] == "S"
    assert gps[3] == "E"
    assert tuple(float(x) for x in gps[2]) == (33.0, 52.0, 7.68)


@pytest.mark.parametrize(
    ("point", "country", "subdivision"),
    [
        (MONTREAL, "CA", "CA-QC"),
        (CHICAGO, "US", "US-IL"),
        (PARIS, "FR", None),
        (SYDNEY, "AU", None),
        (BUENOS_AIRES, "AR", None),
    ],
)
def test_positions_map_to_country_and_subdivision(
    point: tuple[float, float], country: str, subdivision: str | None
) -> None:
    assert country_of(*point) == country
    assert subdivision_of(*point) == subdivision


@pytest.mark.parametrize(
    ("point", "expected"),
    [(MONTREAL, "CA-QC"), (CHICAGO, "US-IL"), (PARIS, "FR"), (SYDNEY, "AU")],
)
def test_photo_jurisdiction_is_the_most_specific_code(
    point: tuple[float, float], expected: str
) -> None:
    assert photo_jurisdiction(_photo(_gps(*point))) == expected


@pytest.mark.parametrize("point", [POINT_NEMO, (0.0, -150.0)])
def test_open_sea_has_no_jurisdiction(point: tuple[float, float]) -> None:
    assert country_of(*point) is None
    assert subdivision_of(*point) is None
    assert photo_jurisdiction(_photo(_gps(*point))) is None


@pytest.mark.parametrize(("lat", "lon"), [(math.nan, 0.0), (0.0, math.inf), (95.0, 0.0), (0, 181)])
def test_country_of_refuses_what_is_not_a_position(lat: float, lon: float) -> None:
    with pytest.raises(InvalidArgument):
        country_of(lat, lon)


def test_decimal_degrees_in_a_single_rational_are_read() -> None:
    gps = {1: "N", 2: (41.88,), 3: "W", 4: (87.63,)}
    found = exif_gps(_photo(gps))
    assert found == pytest.approx(CHICAGO, abs=1e-5)


def _png_without_exif() -> bytes:
    return _photo(None, "PNG")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_photo(None), id="jpeg-without-exif"),
        pytest.param(_png_without_exif(), id="png-without-exif"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*garbage", id="corrupt-jpeg"),
        pytest.param(b"definitely not an image", id="text"),
    ],
)
def test_no_usable_exif_gives_none(data: bytes) -> None:
    assert exif_gps(data) is None
    assert photo_jurisdiction(data) is None


def test_exif_without_a_gps_block_gives_none() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif)
    assert exif_gps(buffer.getvalue()) is None


def _chicago_with(**changes: Any) -> dict[int, Any]:
    gps = _gps(*CHICAGO)
    for key, value in changes.items():
        tag = int(key.removeprefix("tag"))
        if value is None:
            del gps[tag]
        else:
            gps[tag] = value
    return gps


@pytest.mark.parametrize(
    "gps",
    [
        pytest.param(
            _chicago_with(
                tag2=(TiffImagePlugin.IFDRational(41, 1), TiffImagePlugin.IFDRational(52, 0), 0.0)
            ),
            id="zero-denominator",
        ),
        pytest.param(_chicago_with(tag2=(95.0, 0.0, 0.0)), id="latitude-95"),
        pytest.param(_chicago_with(tag4=(181.0, 0.0, 0.0)), id="longitude-181"),
        pytest.param(_chicago_with(tag2=(41.0, 75.0, 0.0)), id="minutes-75"),
        pytest.param(_chicago_with(tag1=None), id="no-latitude-ref"),
        pytest.param(_chicago_with(tag3="X"), id="unknown-longitude-ref"),
        pytest.param(_chicago_with(tag4=None), id="no-longitude"),
        pytest.param(_chicago_with(tag9="V"), id="void-fix"),
        pytest.param(_chicago_with(tag2=(1.0, 2.0, 3.0, 4.0)), id="four-parts"),
    ],
)
def test_malformed_gps_gives_none(gps: dict[int, Any]) -> None:
    data = _photo(gps)
    assert exif_gps(data) is None
    assert photo_jurisdiction(data) is None


def test_active_fix_is_read() -> None:
    # The void-fix case above fails for the right reason: "A" (active) is read.
    assert exif_gps(_photo(_chicago_with(tag9="A"))) == pytest.approx(CHICAGO, abs=1e-5)


def test_pixels_are_never_decoded() -> None:
    # Everything after the start of scan is cut: decoding would fail, the header still reads.
    data = _photo(_gps(*CHICAGO))
    truncated = data[: data.index(b"\xff\xda") + 16]
    with Image.open(io.BytesIO(truncated)) as image, pytest.raises(OSError):
        image.load()
    assert exif_gps(truncated) == pytest.approx(CHICAGO, abs=1e-5)


def test_png_with_exif_in_its_header_is_read() -> None:
    assert exif_gps(_photo(_gps(*PARIS), "PNG")) == pytest.approx(PARIS, abs=1e-5)


def test_reverse_geocode_is_not_loaded_at_import() -> None:
    code = (
        "import sys, countenance.governance.geo; "
        "sys.exit('reverse_geocode' in sys.modules or 'scipy' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
