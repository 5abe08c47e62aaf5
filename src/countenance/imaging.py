"""Bytes in, an upright RGB array out, or a :class:`~countenance.errors.BadImage` saying why.

Every photo enters the engine through :func:`decode`: it refuses what is not an image, refuses
pixel bombs from the header before any pixel is decoded, applies the EXIF orientation and turns
every Pillow mode (palette, greyscale, 16-bit, float, CMYK, alpha, ...) into 8-bit RGB, with
transparency composited onto white. No Pillow or OS exception escapes; no Pillow global is
touched.

Example::

    data = read_file("photos/beach.jpg", max_bytes=50_000_000)
    image = decode(data, name="beach.jpg")
    image.rgb.shape   # (image.height, image.width, 3), uint8
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from countenance.errors import BadImage, InvalidArgument

__all__ = ["IMAGE_SUFFIXES", "Decoded", "decode", "read_file", "sha256"]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".gif",
        ".webp",
        ".bmp",
        ".tif",
        ".tiff",
        ".pgm",
        ".ppm",
        ".pbm",
        ".pnm",
    }
)

# Pillow format names decode() accepts. PPM covers PBM, PGM, PNM and PFM. MPO is not listed:
# Pillow registers no opener under that name (asking for it raises KeyError); the JPEG opener
# returns an MPO image for multi-picture files.
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")

_ORIENTATION_TAG = 0x0112

_RGB = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded photo: ``rgb`` is H x W x 3 uint8, C-contiguous, EXIF orientation applied.

    ``width`` and ``height`` are those of the oriented image; ``format`` is Pillow's name for
    the file format (``JPEG``, ``PNG``, ``GIF``, ``WEBP``, ``BMP``, ``TIFF``, ``PPM``, ``MPO``).

    Example::

        image = decode(data)
        assert image.rgb.shape == (image.height, image.width, 3)
    """

    rgb: _RGB
    width: int
    height: int
    format: str


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``; the content address of a photo.

    Example::

        sha256(b"")  # 'e3b0c442...b855'
    """
    return hashlib.sha256(data).hexdigest()


def read_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """Read a whole photo file, refusing anything that is not a regular file of 1..max_bytes.

    Raises :class:`BadImage` with ``reason`` ``not_a_file``, ``empty``, ``too_large`` (decided
    from ``stat``, without reading) or ``unreadable``.

    Example::

        data = read_file("photos/beach.jpg", max_bytes=50_000_000)
    """
    if max_bytes < 1:
        raise InvalidArgument(f"max_bytes must be at least 1, not {max_bytes}")
    shown = os.fspath(path)
    try:
        info = os.stat(path)
        # stat before open: opening a FIFO or device could block or read forever.
        if not stat.S_ISREG(info.st_mode):
            raise BadImage(f"{shown}: not a regular file", reason="not_a_file")
        if info.st_size == 0:
            raise BadImage(f"{shown}: empty file", reason="empty")
        if info.st_size > max_bytes:
            raise BadImage(
                f"{shown}: {info.st_size} bytes is more than max_bytes={max_bytes}",
                reason="too_large",
            )
        with open(path, "rb") as handle:
            # One byte more than allowed, so a file that grew after stat is still refused.
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise BadImage(f"{shown}: cannot read: {exc.strerror or exc}", reason="unreadable") from exc
    if len(data) > max_bytes:
        raise BadImage(f"{shown}: more than max_bytes={max_bytes} bytes", reason="too_large")
    if not data:
        raise BadImage(f"{shown}: empty file", reason="empty")
    return data


def decode(data: bytes, *, max_pixels: int = 64_000_000, name: str = "") -> Decoded:
    """Decode ``data`` to an upright 8-bit RGB array; ``name`` only labels error messages.

    Only the first frame of an animation is used. Alpha is composited onto white. 16-bit
    greyscale keeps its top 8 bits; float images are stretched from their min..max to 0..255.

    Raises :class:`BadImage` with ``reason`` ``empty``, ``not_an_image``, ``too_many_pixels``
    (decided from the header, before decoding pixels), ``truncated`` or ``corrupt``.

    Example::

        image = decode(open("beach.jpg", "rb").read(), name="beach.jpg")
        image.rgb[0, 0]   # array([r, g, b], dtype=uint8)
    """
    if max_pixels < 1:
        raise InvalidArgument(f"max_pixels must be at least 1, not {max_pixels}")
    if not data:
        raise _bad(name, "empty image data", "empty")
    # Pillow warns about quirks it tolerates (corrupt EXIF, odd palettes): noise per photo at
    # ingest scale, and an error under `-W error`. Its bomb warning reads its global
    # MAX_IMAGE_PIXELS; our max_pixels check is the one that counts. Deprecations still show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _decode(data, max_pixels, name)


def _decode(data: bytes, max_pixels: int, name: str) -> Decoded:
    try:
        # Pillow's bomb *error* (above twice its global limit) fires inside open(), before
        # our check can run; it is reported the same way.
        image = Image.open(io.BytesIO(data), formats=list(_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad(name, f"too many pixels: {exc}", "too_many_pixels") from exc
    except UnidentifiedImageError as exc:
        raise _bad(
            name, "not a JPEG, PNG, GIF, WebP, BMP, TIFF or PNM image", "not_an_image"
        ) from exc
    except Exception as exc:  # Pillow plugins raise a zoo of types on hostile headers
        raise _bad(name, f"unreadable image header: {exc}", "corrupt") from exc
    with image:
        return _decode_open(image, max_pixels, name)


def _decode_open(image: Image.Image, max_pixels: int, name: str) -> Decoded:
    width, height = image.size
    if width * height > max_pixels:
        raise _bad(
            name,
            f"{width}x{height} = {width * height} pixels is more than max_pixels={max_pixels}",
            "too_many_pixels",
        )
    if width * height == 0:
        raise _bad(name, f"image has no pixels ({width}x{height})", "corrupt")
    fmt = image.format or ""
    try:
        image.seek(0)  # first frame of an animation; a no-op for still images
        # load() before anything else touches pixels: PNG's getexif() loads the image itself
        # to find an eXIf chunk after the data, and a second load() after a failed one
        # "succeeds" with whatever was decoded, hiding the corruption.
        image.load()
        rgb = _to_rgb(image)
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, struct.error, ...
        message = str(exc) or type(exc).__name__
        if "truncat" in message.lower():
            raise _bad(name, f"truncated image data: {message}", "truncated") from exc
        raise _bad(name, f"corrupt image data: {message}", "corrupt") from exc
    rgb = np.ascontiguousarray(_orient(rgb, _orientation(image)))
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return Decoded(rgb=rgb, width=int(rgb.shape[1]), height=int(rgb.shape[0]), format=fmt)


def _bad(name: str, message: str, reason: str) -> BadImage:
    return BadImage(f"{name}: {message}" if name else message, reason=reason)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8), or 1 when there is none or the EXIF block is broken."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not cost us the photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(rgb: _RGB, orientation: int) -> _RGB:
    """Apply an EXIF orientation to an H x W x C array, the same way ImageOps.exif_transpose does.

    Done on the array, not with exif_transpose, because that copies the whole image when there
    is nothing to do and rewrites the EXIF bytes after rotating, which fails on broken blocks.
    """
    if orientation == 2:
        return rgb[:, ::-1]
    if orientation == 3:
        return rgb[::-1, ::-1]
    if orientation == 4:
        return rgb[::-1]
    if orientation == 5:
        return rgb.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(rgb, k=-1)
    if orientation == 7:
        return rgb[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(rgb, k=1)
    return rgb


def _to_rgb(image: Image.Image) -> _RGB:
    """Any loaded Pillow image as H x W x 3 uint8; alpha and transparency go onto white."""
    mode = image.mode
    if mode == "I" or mode.startswith("I;16"):
        grey = _sixteen_bit_to_8(np.asarray(image))
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):  # tRNS on 16-bit greyscale PNG: one key value
            grey[np.asarray(image) == transparent] = 255
        return _grey_to_rgb(grey)
    if mode == "F":
        return _grey_to_rgb(_stretch(np.asarray(image, dtype=np.float64)))
    bands = image.getbands()
    if "A" in bands or "a" in bands or "transparency" in image.info:
        return _over_white(np.asarray(image.convert("RGBA")))
    if mode != "RGB":
        # Pillow undoes Adobe's inverted CMYK JPEGs while decoding, so a plain convert is right.
        image = image.convert("RGB")
    return np.asarray(image)


def _sixteen_bit_to_8(values: npt.NDArray[np.integer]) -> _RGB:
    """16-bit greyscale to 8 bits by its full range (top byte), not by clipping at 255."""
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return (values >> 8).astype(np.uint8)
    # Mode "I" is int32: Pillow uses it for 16-bit PNM (already scaled to 0..65535) and
    # 32-bit TIFF; only values outside 16 bits are stretched instead.
    if values.size and (int(values.min()) < 0 or int(values.max()) > 0xFFFF):
        return _stretch(values.astype(np.float64))
    return (values >> 8).astype(np.uint8)


def _stretch(values: npt.NDArray[np.floating]) -> _RGB:
    """Scale finite values from their min..max to 0..255; NaN, inf and flat images give 0."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: _RGB) -> _RGB:
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


def _over_white(rgba: _RGB) -> _RGB:
    """Composite H x W x 4 RGBA onto white, so transparent backgrounds do not turn black."""
    alpha = rgba[:, :, 3:4]
    if alpha.min() == 255:
        return rgba[:, :, :3]
    alpha16 = alpha.astype(np.uint16)
    over = rgba[:, :, :3].astype(np.uint16) * alpha16 + 255 * (255 - alpha16)
    return ((over + 127) // 255).astype(np.uint8)
