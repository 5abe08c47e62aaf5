"""Five-point similarity alignment: the Umeyama fit, the warp's pixel convention, the crop."""

from __future__ import annotations

import numpy as np
import pytest

from countenance.errors import InvalidArgument
from countenance.types import Landmarks5
from countenance.vision.align import (
    ARCFACE_112,
    arcface_crop,
    arcface_template,
    crop_resize,
    similarity_transform,
    warp,
)


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _image_points(matrix: np.ndarray, crop_points: np.ndarray) -> np.ndarray:
    """Where the crop points lie in the photo, for an image -> crop ``matrix``."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    return _apply(inverse, crop_points)


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"),
    [(1.0, 0.0, 0.0, 0.0), (1.7, 0.4, 12.0, -5.0), (0.31, -2.8, 300.5, 41.25), (4.0, 3.0, -7, 9)],
)
def test_umeyama_recovers_a_known_similarity_exactly(
    scale: float, angle: float, tx: float, ty: float
) -> None:
    rng = np.random.default_rng(7)
    src = rng.uniform(-100, 400, size=(9, 2))
    truth = _similarity(scale, angle, tx, ty)
    fitted = similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(fitted, truth, atol=1e-9)


def test_umeyama_is_the_least_squares_fit_under_noise() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = _apply(_similarity(0.6, 0.2, 10, 20), src) + rng.normal(0, 2.0, size=(5, 2))
    fitted = similarity_transform(src, dst)

    def cost(m: np.ndarray) -> float:
        return float(((_apply(m, src) - dst) ** 2).sum())

    best = cost(fitted)
    # no nearby similarity (perturbed scale, angle or shift) fits better
    scale = float(np.hypot(*fitted[:, 0]))
    angle = float(np.arctan2(fitted[1, 0], fitted[0, 0]))
    for ds, da, dx in [(1e-3, 0, 0), (-1e-3, 0, 0), (0, 1e-3, 0), (0, -1e-3, 0), (0, 0, 0.05)]:
        other = _similarity(scale + ds, angle + da, fitted[0, 2] + dx, fitted[1, 2])
        assert cost(other) > best


def test_umeyama_never_fits_a_mirror_image() -> None:
    src = ARCFACE_112.copy()
    mirrored = src * [-1, 1]  # a reflection cannot be a rotation: the fit must stay proper
    fitted = similarity_transform(src, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_umeyama_refuses_bad_points() -> None:
    with pytest.raises(InvalidArgument):
        similarity_transform([[1, 1], [1, 1], [1, 1]], [[0, 0], [1, 0], [0, 1]])
    with pytest.raises(InvalidArgument):
        similarity_transform([[0, 0], [1, 0]], [[0, 0], [1, 0], [0, 1]])


def test_template_scales_as_insightface() -> None:
    np.testing.assert_array_equal(arcface_template(112), ARCFACE_112)
    np.testing.assert_allclose(arcface_template(224), ARCFACE_112 * 2)
    np.testing.assert_allclose(arcface_template(128)[:, 0], ARCFACE_112[:, 0] + 8)


def _dots(shape: tuple[int, int], points: np.ndarray, sigma: float) -> np.ndarray:
    """A black image with a smooth bright dot centred on each (sub-pixel) point."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), dtype=np.float64)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    grey = np.clip(img * 255, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _centroid(img: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    x0, y0 = np.round(near).astype(int)
    window = img[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1, 0].astype(float)
    yy, xx = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    return np.array([(window * xx).sum(), (window * yy).sum()]) / window.sum()


@pytest.mark.parametrize(
    ("scale", "angle", "shape"),
    [
        (0.8, 0.0, (250, 250)),  # an LFW-sized face, upright
        (0.5, 0.35, (300, 400)),  # tilted
        (0.9, -0.6, (200, 220)),
        (0.2, 0.25, (1000, 900)),  # a large face: shrunk 5x, through the block average
    ],
)
def test_arcface_crop_puts_the_landmarks_on_the_template(
    scale: float, angle: float, shape: tuple[int, int]
) -> None:
    h, w = shape
    # image -> crop: the template lands in the middle of the photo
    centre = ARCFACE_112.mean(axis=0)
    rot = _similarity(scale, angle, 0, 0)
    shift = centre - _apply(rot, np.array([[w / 2, h / 2]]))[0]
    matrix = _similarity(scale, angle, *shift)
    points = _image_points(matrix, ARCFACE_112)
    img = _dots(shape, points, sigma=1.5 / scale)
    landmarks = Landmarks5(tuple(map(tuple, points)), "arcface5")  # type: ignore[arg-type]
    crop = arcface_crop(img, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for target in ARCFACE_112:
        found = _centroid(crop, target)
        assert np.hypot(*(found - target)) < 0.05, (target, found)


def test_warp_samples_pixel_centres_as_landmarks_place_them() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    # a whole-pixel shift moves pixels exactly; a half-pixel one averages neighbours
    shifted = warp(img, [[1, 0, 3], [0, 1, 2]], (80, 60))
    np.testing.assert_array_equal(shifted[2:, 3:], img[:-2, :-3])
    half = warp(img, [[1, 0, -0.5], [0, 1, 0]], (80, 60)).astype(float)
    expected = (img[:, :-1].astype(float) + img[:, 1:]) / 2
    assert np.abs(half[:, :-1] - expected).max() <= 0.5
    # and outside the photo is black
    assert (shifted[:2] == 0).all() and (shifted[:, :3] == 0).all()


def test_crop_resize_maps_region_edges_to_crop_edges() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_resize(img, (10, 5, 42, 37), 32), img[5:37, 10:42])
    for factor in (2, 3, 4):
        big = np.kron(img, np.ones((factor, factor, 1), dtype=np.uint8))
        side = 60 * factor
        np.testing.assert_array_equal(crop_resize(big, (0, 0, side, side), 60), img[:, :60])


def test_arcface_crop_refuses_another_scheme() -> None:
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    dlib5 = Landmarks5(((60, 40), (55, 40), (40, 40), (45, 40), (50, 60)), "dlib5")
    with pytest.raises(InvalidArgument, match="arcface5"):
        arcface_crop(img, dlib5)


def test_warp_refuses_a_singular_matrix() -> None:
    with pytest.raises(InvalidArgument):
        warp(np.zeros((10, 10, 3), np.uint8), [[1, 1, 0], [1, 1, 0]], 5)


def test_a_large_shrink_averages_rather_than_aliases() -> None:
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, size=(448, 448, 3), dtype=np.uint8)
    small = crop_resize(noise, (0, 0, 448, 448), 112).astype(float)
    # each crop pixel stands for 16 photo pixels: their mean varies a quarter as much
    assert small.std() < noise.std() / 3
