"""countenance.imaging: every input is built here, in memory or under tmp_path."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageOps

from countenance import imaging
from countenance.errors import BadImage, InvalidArgument
from countenance.imaging import IMAGE_SUFFIXES, Decoded, decode, read_file, sha256

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(width: int = 64, height: int = 32) -> Image.Image:
    """Red top-left quarter on blue: big flat blocks survive lossy codecs and show rotation."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = BLUE
    pixels[: height // 2, : width // 2] = RED
    return Image.fromarray(pixels)


def close_to(pixel: npt.NDArray[np.uint8], expected: tuple[int, ...], tolerance: int) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(expected)) <= tolerance))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGB pixels and holds none."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def png_16bit(samples: npt.NDArray[np.uint16], colour_type: int) -> bytes:
    """A 16-bit PNG built by hand (Pillow cannot write 48/64-bit PNG); samples H x W x C."""
    height, width = samples.shape[:2]
    rows = samples.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


# -- small pieces ---------------------------------------------------------------------------


def test_sha256_is_hex_digest() -> None:
    assert sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256(b"a") != sha256(b"b")


def test_image_suffixes_are_lowercase_and_cover_the_formats() -> None:
    expected = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
    expected |= {".pgm", ".ppm", ".pbm", ".pnm"}
    assert expected == IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)


def test_decoded_is_frozen_and_rgb_is_contiguous_writable_uint8() -> None:
    decoded = decode(encode(quadrants(), "PNG"))
    assert isinstance(decoded, Decoded)
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.flags.c_contiguous and decoded.rgb.flags.writeable
    with pytest.raises(AttributeError):
        decoded.width = 1  # type: ignore[misc]


# -- formats --------------------------------------------------------------------------------

FORMATS = [
    # (Pillow save format, mode to save, expected Decoded.format, colour tolerance)
    ("JPEG", "RGB", "JPEG", 40),
    ("PNG", "RGB", "PNG", 0),
    ("GIF", "RGB", "GIF", 8),
    ("WEBP", "RGB", "WEBP", 40),
    ("BMP", "RGB", "BMP", 0),
    ("TIFF", "RGB", "TIFF", 0),
    ("PPM", "RGB", "PPM", 0),
    ("PPM", "L", "PPM", 0),  # a PGM
]


@pytest.mark.parametrize(("save_as", "mode", "fmt", "tolerance"), FORMATS)
def test_each_format_round_trips_size_and_colour(
    save_as: str, mode: str, fmt: str, tolerance: int
) -> None:
    data = encode(quadrants(64, 32).convert(mode), save_as)
    decoded = decode(data)
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (64, 32)
    assert decoded.rgb.shape == (32, 64, 3)
    if mode == "L":  # red and blue both become darkish grey in L; they still differ
        assert decoded.rgb[4, 4, 0] == decoded.rgb[4, 4, 1] == decoded.rgb[4, 4, 2]
        assert decoded.rgb[4, 4, 0] != decoded.rgb[28, 60, 0]
    else:
        assert close_to(decoded.rgb[4, 4], RED, tolerance)
        assert close_to(decoded.rgb[28, 60], BLUE, tolerance)


def test_animated_gif_gives_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 8), RED), Image.new("RGB", (16, 8), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2
    decoded = decode(data)
    assert decoded.format == "GIF"
    assert close_to(decoded.rgb[4, 8], RED, 8)


def test_mpo_gives_the_first_picture() -> None:
    frames = [Image.new("RGB", (16, 8), RED), Image.new("RGB", (16, 8), BLUE)]
    decoded = decode(encode(frames[0], "MPO", save_all=True, append_images=frames[1:]))
    assert decoded.format == "MPO"
    assert close_to(decoded.rgb[4, 8], RED, 40)


# -- orientation ----------------------------------------------------------------------------


def with_orientation(image: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = image.getexif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif.tobytes())


@pytest.mark.parametrize(
    ("orientation", "size", "red_corner"),
    [
        # The red quarter starts top-left of a 64 x 32 picture.
        (3, (64, 32), "bottom_right"),  # 180°
        (6, (32, 64), "top_right"),  # rotate 90° clockwise to display
        (8, (32, 64), "bottom_left"),  # rotate 90° counter-clockwise
    ],
)
def test_exif_orientation_is_applied(
    orientation: int, size: tuple[int, int], red_corner: str
) -> None:
    decoded = decode(with_orientation(quadrants(64, 32), "JPEG", orientation))
    assert (decoded.width, decoded.height) == size
    assert decoded.rgb.shape == (size[1], size[0], 3)
    corners = {
        "top_left": decoded.rgb[2, 2],
        "top_right": decoded.rgb[2, -3],
        "bottom_left": decoded.rgb[-3, 2],
        "bottom_right": decoded.rgb[-3, -3],
    }
    for corner, pixel in corners.items():
        assert close_to(pixel, RED if corner == red_corner else BLUE, 40), corner


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = with_orientation(Image.fromarray(pixels), "PNG", orientation)
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(decode(data).rgb, expected)


def test_broken_exif_does_not_fail_the_decode() -> None:
    image = quadrants(64, 32)
    data = encode(image, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xffjunk")
    with pytest.warns(UserWarning, match="Corrupt EXIF"):
        Image.open(io.BytesIO(data)).close()  # Pillow itself does find the block broken
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and decode() lets no warning out
        decoded = decode(data)
    assert (decoded.width, decoded.height) == (64, 32)
    assert close_to(decoded.rgb[2, 2], RED, 40)


# -- modes ----------------------------------------------------------------------------------


def test_greyscale_l_becomes_equal_channels() -> None:
    grey = Image.fromarray(np.array([[0, 100, 255]], np.uint8))
    rgb = decode(encode(grey, "PNG")).rgb
    assert rgb.tolist() == [[[0, 0, 0], [100, 100, 100], [255, 255, 255]]]


def test_bilevel_becomes_black_and_white() -> None:
    bits = Image.new("1", (8, 2), 0)
    bits.putpixel((3, 1), 1)
    for fmt in ("PNG", "PPM"):  # PPM writes a PBM
        rgb = decode(encode(bits, fmt)).rgb
        assert rgb[1, 3].tolist() == [255, 255, 255]
        assert rgb[0, 0].tolist() == [0, 0, 0]


def test_palette_with_and_without_transparency() -> None:
    palette = Image.new("P", (4, 1))
    palette.putpalette([*RED, *BLUE] + [0] * 762)
    palette.putpixel((1, 0), 1)
    plain = decode(encode(palette, "PNG")).rgb
    assert plain[0, 0].tolist() == list(RED) and plain[0, 1].tolist() == list(BLUE)
    see_through = decode(encode(palette, "PNG", transparency=0)).rgb
    assert see_through[0, 0].tolist() == list(WHITE)  # transparent index onto white
    assert see_through[0, 1].tolist() == list(BLUE)


def test_rgba_composites_onto_white() -> None:
    pixels = np.array([[[0, 0, 0, 0], [255, 0, 0, 255], [255, 0, 0, 128]]], np.uint8)
    rgb = decode(encode(Image.fromarray(pixels, "RGBA"), "PNG")).rgb
    assert rgb[0, 0].tolist() == list(WHITE)  # transparent black is white, not black
    assert rgb[0, 1].tolist() == list(RED)
    assert close_to(rgb[0, 2], (255, 127, 127), 1)


@pytest.mark.parametrize(("mode", "fmt"), [("LA", "PNG"), ("PA", "TIFF")])
def test_grey_and_palette_alpha_composite_onto_white(mode: str, fmt: str) -> None:
    image = Image.new(mode, (2, 1))
    if mode == "PA":
        image.putpalette([*RED] + [0] * 765)
    image.putpixel((0, 0), (0, 0))  # fully transparent
    image.putpixel((1, 0), (0, 255))  # opaque entry 0: black for LA, red for PA
    rgb = decode(encode(image, fmt)).rgb
    assert rgb[0, 0].tolist() == list(WHITE)
    assert rgb[0, 1].tolist() == ([0, 0, 0] if mode == "LA" else list(RED))


def test_transparency_key_on_rgb_and_grey_png_becomes_white() -> None:
    rgb_image = Image.new("RGB", (2, 1), (10, 20, 30))
    rgb_image.putpixel((1, 0), (1, 2, 3))
    rgb = decode(encode(rgb_image, "PNG", transparency=(10, 20, 30))).rgb
    assert rgb[0].tolist() == [list(WHITE), [1, 2, 3]]
    grey = Image.fromarray(np.array([[7, 8]], np.uint8))
    rgb = decode(encode(grey, "PNG", transparency=7)).rgb
    assert rgb[0].tolist() == [list(WHITE), [8, 8, 8]]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_cyan_becomes_cyan(fmt: str) -> None:
    # Pillow writes CMYK JPEG the Adobe way (inverted, APP14 marker) and undoes it on read.
    data = encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), fmt)
    assert decode(data).rgb[4, 4].tolist() == [0, 255, 255]


def test_ycbcr_tiff_converts() -> None:
    ycbcr = Image.new("RGB", (4, 4), RED).convert("YCbCr")
    decoded = decode(encode(ycbcr, "TIFF"))
    assert close_to(decoded.rgb[1, 1], RED, 4)


def test_lab_tiff_converts() -> None:
    # Pillow keeps a*/b* offset by 128 in memory: (255, 128, 128) is white, half L is grey.
    lab = Image.new("LAB", (2, 1), (255, 128, 128))
    lab.putpixel((1, 0), (128, 128, 128))
    rgb = decode(encode(lab, "TIFF")).rgb
    assert close_to(rgb[0, 0], WHITE, 3)
    assert close_to(rgb[0, 1], (119, 119, 119), 10)


GRADIENT_16 = np.linspace(0, 65535, 256).astype(np.uint16).reshape(1, 256)


def assert_gradient(rgb: npt.NDArray[np.uint8]) -> None:
    grey = rgb[0, :, 0].astype(int)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert grey[0] == 0 and grey[-1] == 255
    assert abs(grey[128] - 128) <= 1  # not clipped to white past 255
    assert np.all(np.diff(grey) >= 0) and len(np.unique(grey)) > 200


def test_16_bit_greyscale_png_keeps_its_gradient() -> None:
    image = Image.fromarray(GRADIENT_16)
    data = encode(image, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I;16"
    assert_gradient(decode(data).rgb)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_greyscale_tiff_keeps_its_gradient(mode: str) -> None:
    dtype = "<u2" if mode == "I;16" else ">u2"
    image = Image.frombytes(mode, (256, 1), GRADIENT_16.astype(dtype).tobytes())
    data = encode(image, "TIFF")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == mode
    assert_gradient(decode(data).rgb)


def test_16_bit_pgm_opens_as_mode_i_and_keeps_its_gradient() -> None:
    data = b"P5\n256 1\n65535\n" + GRADIENT_16.astype(">u2").tobytes()
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I"
    assert_gradient(decode(data).rgb)


def test_32_bit_integer_tiff_is_stretched() -> None:
    values = np.array([[-1000, 0, 1_000_000]], np.int32)
    rgb = decode(encode(Image.fromarray(values, "I"), "TIFF")).rgb
    assert rgb[0, :, 0].tolist() == [0, 0, 255]


def test_16_bit_transparency_key_becomes_white() -> None:
    data = encode(Image.fromarray(np.array([[1000, 0]], np.uint16)), "PNG", transparency=1000)
    assert decode(data).rgb[0].tolist() == [list(WHITE), [0, 0, 0]]


def test_48_and_64_bit_png() -> None:
    rgb48 = np.zeros((2, 3, 3), np.uint16)
    rgb48[..., 0] = 65535
    assert decode(png_16bit(rgb48, colour_type=2)).rgb[1, 1].tolist() == list(RED)
    rgba64 = np.zeros((2, 3, 4), np.uint16)
    rgba64[..., 0] = 65535
    rgba64[0, 0, 3] = 65535  # one opaque red pixel, the rest transparent
    rgb = decode(png_16bit(rgba64, colour_type=6)).rgb
    assert rgb[0, 0].tolist() == list(RED) and rgb[1, 1].tolist() == list(WHITE)


def test_float_image_is_stretched_from_min_to_max() -> None:
    values = np.array([[-2.0, 0.0, 2.0, np.nan]], np.float32)
    rgb = decode(encode(Image.fromarray(values, "F"), "TIFF")).rgb
    assert rgb[0, :, 0].tolist() == [0, 128, 255, 0]
    flat = decode(encode(Image.fromarray(np.ones((2, 2), np.float32), "F"), "TIFF")).rgb
    assert not flat.any()


def test_pfm_float_opens() -> None:
    data = b"Pf\n2 1\n-1.0\n" + np.array([0.5, 2.0], "<f4").tobytes()
    decoded = decode(data)
    assert decoded.format == "PPM"
    assert decoded.rgb[0, :, 0].tolist() == [0, 255]


# -- refusals -------------------------------------------------------------------------------


def test_max_pixels_refuses_before_decoding() -> None:
    data = encode(quadrants(64, 32), "PNG")
    with pytest.raises(BadImage) as caught:
        decode(data, max_pixels=64 * 32 - 1, name="big.png")
    assert caught.value.reason == "too_many_pixels"
    assert "64x32" in str(caught.value) and str(caught.value).startswith("big.png: ")
    assert decode(data, max_pixels=64 * 32).width == 64


def test_header_claiming_huge_dimensions_is_refused_from_the_header() -> None:
    # No pixel data at all: a loader that decoded first would report "truncated" instead.
    started = time.perf_counter()
    with pytest.raises(BadImage) as caught:
        decode(png_header_only(9000, 9000))  # 81 M: under Pillow's limit, over ours
    assert caught.value.reason == "too_many_pixels"
    assert "9000x9000" in str(caught.value)
    with pytest.raises(BadImage) as caught:
        decode(png_header_only(100_000, 100_000))  # past Pillow's own hard limit
    assert caught.value.reason == "too_many_pixels"
    assert time.perf_counter() - started < 1.0


def test_pillow_bomb_warning_is_silenced_and_our_limit_applies() -> None:
    # 100 M pixels: over Pillow's 89 M warning threshold, under its 179 M hard limit.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(BadImage) as caught:
            decode(png_header_only(10_000, 10_000))
        with pytest.raises(BadImage) as allowed:
            decode(png_header_only(10_000, 10_000), max_pixels=200_000_000)
    assert caught.value.reason == "too_many_pixels"
    assert allowed.value.reason in {"truncated", "corrupt"}  # passed the check, then no data
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # global untouched


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused(fmt: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), fmt)
    with pytest.raises(BadImage) as caught:
        decode(data[: len(data) // 2], name="photo.jpg")
    assert caught.value.reason in {"truncated", "corrupt"}
    assert str(caught.value).startswith("photo.jpg: ")
    assert not isinstance(caught.value.__cause__, BadImage)


def test_jpeg_cut_in_half_says_truncated() -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG")
    with pytest.raises(BadImage, match="truncated") as caught:
        decode(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


def test_corrupt_pixel_data_is_refused() -> None:
    data = bytearray(encode(Image.new("RGB", (32, 32), RED), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 20] = b"\xff" * 20  # garbage where the zlib stream starts
    with pytest.raises(BadImage) as caught:
        decode(bytes(data))
    assert caught.value.reason in {"corrupt", "truncated"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x00" + np.random.default_rng(3).bytes(4096), "not_an_image"),
        (b"Dear diary, today I took no photos.\n" * 20, "not_an_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not_an_image"),
        (encode(Image.new("RGB", (4, 4)), "ICO"), "not_an_image"),  # real, but not allowed
    ],
    ids=["empty", "random", "text", "png-signature-only", "ico"],
)
def test_not_images_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadImage) as caught:
        decode(data, name="thing.jpg")
    assert caught.value.reason == reason
    assert str(caught.value).startswith("thing.jpg: ")


def test_bad_max_pixels_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        decode(b"anything", max_pixels=0)


# -- read_file ------------------------------------------------------------------------------


class OpenSpy:
    """Stands in for builtins.open inside countenance.imaging and counts the calls."""

    def __init__(self, grow: bytes = b"") -> None:
        self.calls = 0
        self.grow = grow

    def __call__(self, path: str | os.PathLike[str], mode: str = "r") -> IO[Any]:
        self.calls += 1
        if self.grow:  # the file grows between stat and read
            with open(path, "ab") as handle:
                handle.write(self.grow)
        return open(path, mode)  # closed by the caller's `with`


def test_read_file_returns_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"12345")
    assert read_file(path, max_bytes=5) == b"12345"
    assert read_file(str(path), max_bytes=100) == b"12345"


def test_read_file_refuses_too_large_without_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jpg"
    with open(path, "wb") as handle:
        handle.truncate(10_000_000_000)  # sparse: 10 GB on paper, nothing on disk
    spy = OpenSpy()
    monkeypatch.setattr(imaging, "open", spy, raising=False)
    with pytest.raises(BadImage) as caught:
        read_file(path, max_bytes=1000)
    assert caught.value.reason == "too_large"
    assert "big.jpg" in str(caught.value)
    assert spy.calls == 0


def test_read_file_refuses_a_file_that_grows_while_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"x" * 10)
    spy = OpenSpy(grow=b"y" * 10)
    monkeypatch.setattr(imaging, "open", spy, raising=False)
    with pytest.raises(BadImage) as caught:
        read_file(path, max_bytes=15)
    assert caught.value.reason == "too_large"
    assert spy.calls == 1


def test_read_file_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(BadImage) as caught:
        read_file(tmp_path, max_bytes=1000)
    assert caught.value.reason == "not_a_file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_read_file_fifo_is_not_a_file_and_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    with pytest.raises(BadImage) as caught:
        read_file(path, max_bytes=1000)
    assert caught.value.reason == "not_a_file"


def test_read_file_zero_bytes_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(BadImage) as caught:
        read_file(path, max_bytes=1000)
    assert caught.value.reason == "empty"


def test_read_file_missing_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BadImage) as caught:
        read_file(tmp_path / "nowhere.jpg", max_bytes=1000)
    assert caught.value.reason == "unreadable"
    assert "nowhere.jpg" in str(caught.value)


def test_read_file_bad_max_bytes_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        read_file(tmp_path, max_bytes=0)


def test_read_then_decode(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(encode(quadrants(), "PNG"))
    decoded = decode(read_file(path, max_bytes=1 << 20), name=path.name)
    assert (decoded.width, decoded.height) == (64, 32)
