"""Where a photo was taken, as an ISO 3166 code, from its EXIF GPS block, found offline.

A photo's jurisdiction decides which law governs its biometric processing (Illinois' BIPA,
Quebec's Law 25, the GDPR, ...). :func:`exif_gps` reads the GPS position from the EXIF header
without decoding a pixel; :func:`country_of` and :func:`subdivision_of` map a position to a code
with reverse_geocode's bundled GeoNames table (cities of 1000+ people, nearest place by a
KD-tree), never the network; :func:`photo_jurisdiction` chains them.

Codes are a best guess, not a survey: the answer is the country of the *nearest known place*,
which near a border can lie across it (a photo taken in Detroit may be matched to Windsor). A
place more than :data:`MAX_PLACE_DISTANCE_KM` away means open sea or a place the table does not
know, and gives ``None``. The KD-tree measures plain degrees, so near the poles and the 180th
meridian it may return a place that is not the nearest; the distance rule then errs towards
``None``, never towards a far-away country.

Example::

    data = open("photos/bean.jpg", "rb").read()
    exif_gps(data)             # (41.8827, -87.6233)
    photo_jurisdiction(data)   # 'US-IL'
    country_of(48.8566, 2.3522)  # 'FR'
"""

from __future__ import annotations

import io
import math
import numbers
import os
import threading
import warnings
from types import ModuleType
from typing import Any

from PIL import Image

from countenance.errors import BackendUnavailable, InvalidArgument

__all__ = [
    "MAX_PLACE_DISTANCE_KM",
    "country_of",
    "exif_gps",
    "photo_jurisdiction",
    "subdivision_of",
]

MAX_PLACE_DISTANCE_KM = 200.0
"""Beyond this great-circle distance (km) from the nearest known place, a point is open sea."""

_EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius

# Formats whose EXIF Pillow reads from the header. GIF, BMP and PNM carry no EXIF.
_FORMATS = ("JPEG", "TIFF", "WEBP", "PNG")

_GPS_IFD = 0x8825
_GPS_LATITUDE_REF = 1
_GPS_LATITUDE = 2
_GPS_LONGITUDE_REF = 3
_GPS_LONGITUDE = 4
_GPS_STATUS = 9

# ISO 3166-2 subdivision suffixes, keyed by the admin-1 names GeoNames uses in reverse_geocode's
# table ("state"). Only the US and Canada: their states and provinces make their own biometric
# law. DC is listed because ISO 3166-2 lists it (US-DC), though it is a district.
_US_STATES = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "District of Columbia": "DC",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
}
_CA_PROVINCES = {
    "Alberta": "AB",
    "British Columbia": "BC",
    "Manitoba": "MB",
    "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL",
    "Northwest Territories": "NT",
    "Nova Scotia": "NS",
    "Nunavut": "NU",
    "Ontario": "ON",
    "Prince Edward Island": "PE",
    "Quebec": "QC",
    "Saskatchewan": "SK",
    "Yukon": "YT",
}
_SUBDIVISIONS = {"US": _US_STATES, "CA": _CA_PROVINCES}


def exif_gps(data: bytes) -> tuple[float, float] | None:
    """``(latitude, longitude)`` in decimal degrees from the EXIF GPS block, or ``None``.

    South and west are negative. Reads JPEG, TIFF, WebP and PNG headers only; no pixel is
    decoded. Never raises: no image, no EXIF, no GPS block, a missing or unknown N/S/E/W
    reference, a fix the receiver marked void, a zero denominator, NaN, negative parts, minutes
    or seconds above 60, or a position outside +-90 / +-180 all give ``None``. A PNG whose eXIf
    chunk follows the pixel data gives ``None`` (finding it would mean decoding the pixels), as
    does an image so large that Pillow refuses to open it.

    Example::

        exif_gps(open("photos/bean.jpg", "rb").read())   # (41.8827, -87.6233)
        exif_gps(b"not an image")                         # None
    """
    if not data:
        return None
    with warnings.catch_warnings():
        # Pillow warns about quirks it tolerates (corrupt EXIF, huge headers): noise here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return _exif_gps(data)
        except Exception:  # Pillow plugins raise a zoo of types on hostile headers
            return None


def country_of(lat: float, lon: float) -> str | None:
    """ISO 3166-1 alpha-2 code of the nearest known place, or ``None`` for open sea.

    ``None`` where the nearest place is more than :data:`MAX_PLACE_DISTANCE_KM` away or its
    country code is unknown. Raises :class:`InvalidArgument` for a NaN or out-of-range
    position, :class:`BackendUnavailable` if reverse_geocode or its bundled table is missing.
    The first call loads the table (about half a second).

    Example::

        country_of(45.5, -73.57)     # 'CA'
        country_of(-48.88, -123.39)  # None (Point Nemo)
    """
    place = _nearest_place(lat, lon)
    return None if place is None else str(place["country_code"])


def subdivision_of(lat: float, lon: float) -> str | None:
    """ISO 3166-2 code of the US state or Canadian province at a position, else ``None``.

    ``None`` elsewhere in the world, at sea (as :func:`country_of`), or where the table names
    no state. Raises as :func:`country_of`.

    Example::

        subdivision_of(41.88, -87.63)  # 'US-IL'
        subdivision_of(45.5, -73.57)   # 'CA-QC'
        subdivision_of(48.86, 2.35)    # None
    """
    place = _nearest_place(lat, lon)
    return None if place is None else _subdivision(place)


def photo_jurisdiction(data: bytes) -> str | None:
    """The most specific code the photo's EXIF GPS gives, or ``None``.

    A US state or Canadian province (``"US-IL"``, ``"CA-QC"``) where the table names one, else
    the country (``"FR"``), else ``None`` (no usable GPS, or open sea). A caller keyed on
    countries takes the part before the hyphen. Raises only :class:`BackendUnavailable`.

    Example::

        photo_jurisdiction(open("photos/bean.jpg", "rb").read())  # 'US-IL'
        photo_jurisdiction(open("photos/eiffel.jpg", "rb").read())  # 'FR'
    """
    point = exif_gps(data)
    if point is None:
        return None
    place = _nearest_place(*point)
    if place is None:
        return None
    return _subdivision(place) or str(place["country_code"])


def _exif_gps(data: bytes) -> tuple[float, float] | None:
    with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as image:
        # PNG's getexif() decodes every pixel to look for an eXIf chunk after the image data;
        # only an eXIf chunk already seen in the header is read.
        if image.format == "PNG" and "exif" not in image.info:
            return None
        gps = image.getexif().get_ifd(_GPS_IFD)
    if not gps:
        return None
    if _letter(gps.get(_GPS_STATUS)) == "V":  # the receiver marked the fix void
        return None
    lat = _degrees(gps.get(_GPS_LATITUDE), gps.get(_GPS_LATITUDE_REF), "N", "S", 90.0)
    lon = _degrees(gps.get(_GPS_LONGITUDE), gps.get(_GPS_LONGITUDE_REF), "E", "W", 180.0)
    if lat is None or lon is None:
        return None
    return lat, lon


def _letter(value: object) -> str | None:
    # EXIF ASCII values come back as str, or bytes from some writers, often NUL-padded.
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ").upper()


def _degrees(
    value: object, ref: object, positive: str, negative: str, limit: float
) -> float | None:
    # EXIF stores unsigned (degrees, minutes, seconds) plus a hemisphere letter; a missing
    # letter is refused rather than guessed, since a wrong guess is a wrong jurisdiction.
    letter = _letter(ref)
    if letter == positive:
        sign = 1.0
    elif letter == negative:
        sign = -1.0
    else:
        return None
    # Pillow returns a single rational as a scalar; some writers store decimal degrees alone.
    parts = tuple(value) if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers_: list[float] = []
    for part in parts:
        # IFDRational is a numbers.Rational; a zero denominator makes it NaN.
        if isinstance(part, bool) or not isinstance(part, numbers.Real):
            return None
        number = float(part)
        if not math.isfinite(number) or number < 0:
            return None
        numbers_.append(number)
    if any(number > 60 for number in numbers_[1:]):
        return None
    total = sum(number / 60**i for i, number in enumerate(numbers_))
    if total > limit:
        return None
    return sign * total


def _subdivision(place: dict[str, Any]) -> str | None:
    country = place["country_code"]
    table = _SUBDIVISIONS.get(country)
    if table is None:
        return None
    suffix = table.get(place.get("state", ""))
    return None if suffix is None else f"{country}-{suffix}"


def _nearest_place(lat: float, lon: float) -> dict[str, Any] | None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidArgument(f"not a position in degrees: latitude {lat}, longitude {lon}")
    # The returned dict is reverse_geocode's own cached row: read it, never change it.
    place: dict[str, Any] = _GEOCODER.get(float(lat), float(lon))
    code = place.get("country_code")
    # "country" is empty where the code is missing from reverse_geocode's country table.
    known = isinstance(code, str) and len(code) == 2 and code.isalpha() and code.isupper()
    if not known or not place.get("country"):
        return None
    distance = _haversine_km(lat, lon, float(place["latitude"]), float(place["longitude"]))
    if distance > MAX_PLACE_DISTANCE_KM:
        return None
    return place


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


class _LazyGeocoder:
    """reverse_geocode, imported and its KD-tree built on first use, then kept.

    Loading takes about half a second and scipy, so it never happens at import of this module.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._module: ModuleType | None = None

    def get(self, lat: float, lon: float) -> Any:
        module = self._module
        if module is None:
            with self._lock:  # one thread builds the tree; the others wait for it
                if self._module is None:
                    self._module = _load_reverse_geocode()
                module = self._module
        return module.get((lat, lon))


def _load_reverse_geocode() -> ModuleType:
    try:
        import reverse_geocode
    except ImportError as exc:
        raise BackendUnavailable(
            "locating photos needs reverse_geocode: pip install reverse_geocode"
        ) from exc
    # Without its bundled table reverse_geocode downloads one from geonames.org; refuse
    # instead, so that locating a photo never touches the network.
    table = os.path.join(os.path.dirname(reverse_geocode.__file__), "geocode.gz")
    if not os.path.isfile(table):
        raise BackendUnavailable(
            f"reverse_geocode's bundled table {table} is missing: "
            "pip install --force-reinstall reverse_geocode"
        )
    reverse_geocode.get((0.0, 0.0))  # builds the KD-tree now, under the caller's lock
    return reverse_geocode


_GEOCODER = _LazyGeocoder()
