"""Perceptual hashes of photos, so that a near-duplicate (the same photo re-encoded, resized
or re-saved elsewhere) is linked to the stored original instead of being embedded again.

The hash is the classic 64-bit DCT hash (pHash): the photo in greyscale at 32 x 32, its 2-D
DCT, and one bit per coefficient of the top-left 8 x 8 block, set where the coefficient is
above the block's median. Two photos are near-duplicates when their hashes differ in at most
:data:`MAX_DISTANCE` bits *and* their 4 x 4 colour thumbnails (48 bytes, kept beside the hash)
differ by at most :data:`MAX_COLOUR_DIFF` on average. The hash alone ignores colour and
contrast: two layouts alike in shape but not in colour (a red square and a green one; one
scene before and after a person walks in, lit alike) can share a hash, and linking a photo
that is not a copy would lose its faces. The thumbnail check costs nothing and refuses those.

Lookup never scans every stored hash: the 64 bits are cut into four 16-bit bands, each stored
in an indexed column. Two hashes within 7 bits of each other differ in at most one bit in at
least one band (pigeonhole: four bands holding two or more differing bits each would take 8),
so looking up each band's value and its 16 one-bit neighbours finds every candidate.

Example::

    sig = signature(data)          # None for a flat image or one that will not decode
    if sig is not None and same_photo(sig, stored):
        print("near-duplicate")
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "MAX_COLOUR_DIFF",
    "MAX_DISTANCE",
    "Signature",
    "band_probes",
    "bands",
    "hamming",
    "same_photo",
    "signature",
]

MAX_DISTANCE = 4
"""Largest Hamming distance (bits of 64) at which two photos count as near-duplicates.

Measured with ``benchmarks/phash_distances.py`` over LFW (5,373 photos: the hard case, faces
aligned at one place on similar backgrounds): 1,800 copies (JPEG at quality 50/75/95, half and
double size, PNG) of 300 photos land at 0..2 bits from their original. Among the 14.4 million
pairs of distinct files, 5 lie within 4 bits, all at 0 or 2 and all the same picture filed
twice (e.g. ``Ari_Fleischer_0006``/``0011``); the first pair of two different people is at 6.
Four is above every copy and below every different picture, with 2 bits of margin each way.
"""

MAX_COLOUR_DIFF = 4.0
"""Largest mean absolute difference (0..255) between two 4 x 4 RGB thumbnails of copies.

The same 1,800 LFW copies as above differ by at most 1.25; synthetic photos of squares of
different colours or sizes (the unit tests' fake faces, all within a few bits by hash) by 8.9
or more.
"""

_SIDE = 32
_LOW = 8
# a greyscale image whose 32 x 32 thumbnail varies less than this (standard deviation, 0..255)
# has no structure to hash: every flat or near-flat image would collide with every other
_MIN_STD = 2.0


@cache
def _dct_matrix(n: int) -> npt.NDArray[np.float64]:
    """The orthonormal DCT-II matrix: ``M @ x`` is the DCT of a length-n column ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


@dataclass(frozen=True, slots=True)
class Signature:
    """A photo's perceptual hash (signed int64, it fits a SQL BIGINT) and colour thumbnail
    (4 x 4 RGB, 48 bytes)."""

    phash: int
    rgb: bytes


def same_photo(a: Signature, b: Signature) -> bool:
    """Whether two signatures are of copies of one photo (see the module docstring)."""
    if hamming(a.phash, b.phash) > MAX_DISTANCE or len(a.rgb) != len(b.rgb):
        return False
    x = np.frombuffer(a.rgb, dtype=np.uint8).astype(np.int16)
    y = np.frombuffer(b.rgb, dtype=np.uint8).astype(np.int16)
    return float(np.abs(x - y).mean()) <= MAX_COLOUR_DIFF


def signature(data: bytes, *, max_pixels: int = 64_000_000) -> Signature | None:
    """The :class:`Signature` of an encoded photo, or None when the photo cannot be read
    within ``max_pixels`` or is flat (nothing to hash).

    JPEGs are decoded at reduced scale (``draft``), so this costs a fraction of a full
    decode. Never raises for bad input: the full decode later reports why a photo is bad.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            with image:
                width, height = image.size
                if width * height > max_pixels or width * height == 0:
                    return None
                image.draft("RGB", (_SIDE * 2, _SIDE * 2))
                orientation = image.getexif().get(0x0112, 1)
                rgb = image.convert("RGB")
                grey = rgb.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
                thumb = rgb.resize((4, 4), Image.Resampling.BOX)
    except Exception:  # a hostile or broken file: no hash, the decoder reports it
        return None
    turn = orientation if isinstance(orientation, int) else 1
    pixels = _orient(np.asarray(grey, dtype=np.float64), turn)
    colours = np.ascontiguousarray(_orient(np.asarray(thumb, dtype=np.float64), turn))
    if pixels.std() < _MIN_STD:
        return None
    m = _dct_matrix(_SIDE)
    low = (m @ pixels @ m.T)[:_LOW, :_LOW].ravel()
    bits = low > np.median(low)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    signed = value - (1 << 64) if value >= 1 << 63 else value
    return Signature(signed, colours.astype(np.uint8).tobytes())


def phash(data: bytes, *, max_pixels: int = 64_000_000) -> int | None:
    """Just the 64-bit perceptual hash (signed), or None; see :func:`signature`."""
    sig = signature(data, max_pixels=max_pixels)
    return None if sig is None else sig.phash


def _orient(pixels: npt.NDArray[np.float64], orientation: int) -> npt.NDArray[np.float64]:
    """The EXIF orientation applied, so a rotated copy hashes like its upright original."""
    turns = {3: 2, 6: -1, 8: 1}.get(orientation)
    if turns is not None:
        return np.rot90(pixels, k=turns)
    if orientation in (2, 4, 5, 7):
        flipped = pixels[:, ::-1]
        return np.rot90(flipped, k={2: 0, 4: 2, 5: 1, 7: -1}[orientation])
    return pixels


def hamming(a: int, b: int) -> int:
    """Bits in which two 64-bit hashes differ (signed or unsigned alike)."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def bands(h: int) -> tuple[int, int, int, int]:
    """The four 16-bit bands of a hash, most significant first, each in 0..65535."""
    u = h & ((1 << 64) - 1)
    return ((u >> 48) & 0xFFFF, (u >> 32) & 0xFFFF, (u >> 16) & 0xFFFF, u & 0xFFFF)


def band_probes(value: int) -> list[int]:
    """A band's value and its 16 one-bit neighbours: where a near-duplicate's band can be."""
    return [value, *(value ^ (1 << i) for i in range(16))]
