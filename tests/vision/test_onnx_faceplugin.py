"""faceplugin's ONNX landmark, embedding and age models.

Pre- and post-processing run against fake sessions (no model needed); the real models run on
real faces from ../shared/faces in the slow tier. The model files are looked for under
``$COUNTENANCE_MODEL_DIR`` (default ``~/.local/share/countenance/models``); missing, those
tests fail under CI and skip elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from countenance.errors import InvalidArgument
from countenance.evaluation import read_lfw_pairs
from countenance.ports import AgeEstimator, Embedder, Landmarker
from countenance.types import Box, DetectedFace, Landmarks5
from countenance.vision.align import ARCFACE_112
from countenance.vision.onnx.faceplugin import (
    AGE_FILE,
    FEATURE_FILE,
    LANDMARK_FILE,
    FrAgeEstimator,
    FrEmbedder,
    FrLandmarker,
    faceplugin_space,
    fit_crop,
    five_from_68,
    merge_age,
)
from countenance.vision.onnx.runtime import Runtime
from tests.conftest import need_faces, need_model, rgb_of

# --- fakes: a runtime whose sessions compute something simple and record what they saw ---


class FakeSession:
    def __init__(self, answer: Any) -> None:
        self._answer = answer
        self.fed: list[np.ndarray] = []

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="input")]

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        self.fed.append(x)
        return self._answer(outputs, x)


class FakeRuntime:
    def __init__(self, answer: Any) -> None:
        self._answer = answer
        self.sessions: list[FakeSession] = []

    def session(self, path: Path) -> FakeSession:
        self.sessions.append(FakeSession(self._answer))
        return self.sessions[-1]


def _feature(outputs: Any, x: np.ndarray) -> list[np.ndarray]:
    # a "model" that is not mirror-symmetric and depends on the channel order: the first
    # three outputs are the channels' means over the left half, then a constant
    assert x.shape == (1, 3, 112, 112) and x.dtype == np.float32
    left = x[0, :, :, :56].mean(axis=(1, 2))
    out = np.zeros((1, 512), np.float32)
    out[0, :3] = left
    out[0, 3] = 0.5
    return [out]


def _face(points: Any = None, scheme: str = "arcface5") -> DetectedFace:
    pts = tuple(map(tuple, ARCFACE_112 + 40)) if points is None else points
    return DetectedFace(Box(20, 20, 190, 190), 1.0, "hog", Landmarks5(pts, scheme))


def _photo() -> np.ndarray:
    # left half red, right half blue: mirror image and channel order both show
    img = np.zeros((200, 200, 3), np.uint8)
    img[:, :96, 0] = 250
    img[:, 96:, 2] = 250
    return img


def test_embeddings_are_unit_float32_rows_one_per_face() -> None:
    embedder = FrEmbedder(Path("x.onnx"), FakeRuntime(_feature))  # type: ignore[arg-type]
    vectors = embedder.embed(_photo(), [_face(), _face()])
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert embedder.embed(_photo(), []).shape == (0, 512)
    assert embedder.space == faceplugin_space() and embedder.space.version == "1+mirror"
    assert embedder.scheme == "arcface5"


def test_mirror_sums_the_crop_and_its_mirror_image() -> None:
    runtime = FakeRuntime(_feature)
    embedder = FrEmbedder(Path("x.onnx"), runtime, mirror=True)  # type: ignore[arg-type]
    plain = FrEmbedder(Path("x.onnx"), FakeRuntime(_feature), mirror=False)  # type: ignore[arg-type]
    (vector,) = embedder.embed(_photo(), [_face()])
    fed = runtime.sessions[0].fed
    assert len(fed) == 2  # one face, two views
    np.testing.assert_array_equal(fed[1], fed[0][:, :, :, ::-1])
    raw = _feature(None, fed[0])[0][0] + _feature(None, fed[1])[0][0]
    np.testing.assert_allclose(vector, raw / np.linalg.norm(raw), rtol=1e-5)
    assert plain.space.version == "1"
    assert not np.allclose(plain.embed(_photo(), [_face()])[0], vector)


def test_input_is_bgr_scaled_by_128_unless_told_rgb() -> None:
    runtime = FakeRuntime(_feature)
    embedder = FrEmbedder(Path("x.onnx"), runtime, mirror=False)  # type: ignore[arg-type]
    (crop,) = embedder.align(_photo(), [_face()])
    embedder.embed(_photo(), [_face()])
    (x,) = runtime.sessions[0].fed
    expected = (crop[:, :, ::-1].astype(np.float32) - 127) / 128
    np.testing.assert_allclose(x[0], expected.transpose(2, 0, 1))
    rgb_runtime = FakeRuntime(_feature)
    rgb = FrEmbedder(Path("x.onnx"), rgb_runtime, mirror=False, bgr=False)  # type: ignore[arg-type]
    rgb.embed(_photo(), [_face()])
    np.testing.assert_allclose(rgb_runtime.sessions[0].fed[0], x[:, ::-1])
    assert rgb.space.version == "1+rgb" and rgb.space != embedder.space


def test_faces_without_arcface_landmarks_are_refused() -> None:
    embedder = FrEmbedder(Path("x.onnx"), FakeRuntime(_feature))  # type: ignore[arg-type]
    bare = DetectedFace(Box(20, 20, 190, 190), 1.0, "hog")
    with pytest.raises(InvalidArgument, match="none"):
        embedder.embed(_photo(), [_face(), bare])
    dlib5 = _face(scheme="dlib5")
    with pytest.raises(InvalidArgument, match="dlib5"):
        embedder.align(_photo(), [dlib5])


def _ibug_68() -> np.ndarray:
    """68 points laid out as iBUG's on an upright face, subject's right eye on image left."""
    p = np.zeros((68, 2))
    p[36:42] = [[30, 40], [34, 37], [38, 37], [42, 40], [38, 43], [34, 43]]
    p[42:48] = p[36:42] + np.array([40, 0])
    p[30] = [56, 70]
    p[48], p[54] = [40, 90], [72, 90]
    return p


def test_68_points_reduce_to_eye_centres_nose_tip_and_mouth_corners() -> None:
    five = five_from_68(_ibug_68())
    assert five.scheme == "arcface5"
    np.testing.assert_allclose(five.points, [[36, 40], [76, 40], [56, 70], [40, 90], [72, 90]])
    # a face seen in a mirror: its pairs still come in image order
    mirrored = _ibug_68() * [-1, 1] + [200, 0]
    xs = [x for x, _ in five_from_68(mirrored).points]
    assert xs[0] < xs[1] and xs[3] < xs[4]


def test_landmarks_come_back_in_photo_pixels_of_the_crop() -> None:
    def centre(outputs: Any, x: np.ndarray) -> list[np.ndarray]:
        assert x.shape == (1, 1, 64, 64) and x.min() >= 0 and x.max() < 1
        rel = _ibug_68() / 100  # box-relative units
        return [rel.reshape(1, 136).astype(np.float32)]

    landmarker = FrLandmarker(Path("x.onnx"), FakeRuntime(centre))  # type: ignore[arg-type]
    box = Box(50, 60, 150, 160)
    (five,) = landmarker.landmarks(np.zeros((300, 300, 3), np.uint8), [box])
    np.testing.assert_allclose(five.points[2], [50 + 56, 60 + 70])
    # a box that overhangs the photo: the crop is shifted inside, the points follow it
    (moved,) = landmarker.landmarks68(np.zeros((300, 300, 3), np.uint8), [Box(-20, 0, 80, 100)])
    np.testing.assert_allclose(moved[30], [0 + 56, 0 + 70])


def test_the_crop_grows_about_the_centre_and_is_shifted_inside_the_photo() -> None:
    assert fit_crop(Box(100, 100, 200, 200), 1.0, 400, 400) == (100, 100, 200, 200)
    assert fit_crop(Box(100, 100, 200, 200), 1.4, 400, 400) == (80, 80, 220, 220)
    assert fit_crop(Box(0, 10, 100, 110), 1.4, 250, 250) == (0, 0, 140, 140)
    # as in the JavaScript, the crop ends before the last column and row (x2 <= width - 1)
    assert fit_crop(Box(150, 150, 249, 249), 1.4, 250, 250) == (110, 110, 248, 248)
    # never larger than the photo
    x1, y1, x2, y2 = fit_crop(Box(0, 0, 100, 100), 1.4, 100, 100)
    assert x2 - x1 <= 99 and y2 - y1 <= 99


def _merge_age_js(x: list[float], s1: int, s2: int, s3: int, lam_l: float, lam_d: float) -> float:
    """fr_age.js mergeAge, transcribed line by line."""
    a = b = c = 0.0
    for i in range(s1):
        a = a + (i + lam_l * x[12 + i]) * x[i]
    a = a / (s1 * (1 + lam_d * x[9]))
    for i in range(s2):
        b = b + (i + lam_l * x[15 + i]) * x[3 + i]
    b = b / (s1 * (1 + lam_d * x[9])) / (s2 * (1 + lam_d * x[10]))
    for i in range(s3):
        c = c + (i + lam_l * x[18 + i]) * x[6 + i]
    c = c / (s1 * (1 + lam_d * x[9])) / (s2 * (1 + lam_d * x[10])) / (s3 * (1 + lam_d * x[11]))
    return (a + b + c) * 101


def test_merge_age_is_fr_age_js_merge_age() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        probs = [rng.dirichlet(np.ones(3)) for _ in range(3)]
        deltas = [rng.uniform(-0.5, 0.5, 1) for _ in range(3)]
        offsets = [rng.uniform(-0.5, 0.5, 3) for _ in range(3)]
        x = np.concatenate([*probs, *deltas, *offsets]).tolist()
        ours = merge_age(*probs, *deltas, *offsets)  # type: ignore[arg-type]
        assert isinstance(ours, float)
        assert ours == pytest.approx(_merge_age_js(x, 3, 3, 3, 1, 1), rel=1e-12)


def test_age_crop_is_rgb_with_imagenet_normalisation() -> None:
    def sure_of_the_top_bin(outputs: Any, x: np.ndarray) -> list[np.ndarray]:
        assert x.shape == (1, 3, 64, 64)
        top = np.array([[0.0, 0.0, 1.0]], np.float32)
        zero1, zero3 = np.zeros((1, 1), np.float32), np.zeros((1, 3), np.float32)
        return [top, top, top, zero1, zero1, zero1, zero3, zero3, zero3]

    runtime = FakeRuntime(sure_of_the_top_bin)
    estimator = FrAgeEstimator(Path("x.onnx"), runtime)  # type: ignore[arg-type]
    red = np.zeros((200, 200, 3), np.uint8)
    red[..., 0] = 255
    (age,) = estimator.estimate(red, [_face()])
    assert age == pytest.approx((2 / 3 + 2 / 9 + 2 / 27) * 101)
    (x,) = runtime.sessions[0].fed
    np.testing.assert_allclose(
        x[0, :, 10, 10], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5
    )


# --- the real models on real faces ---


def _model(name: str) -> Path:
    return need_model(f"model/{name}")


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(threads=1)


@pytest.fixture(scope="module")
def hog() -> Any:
    from countenance.vision.dlib_models import DlibModels, HogDetector

    return HogDetector(DlibModels.load())


@pytest.fixture(scope="module")
def landmarker(runtime: Runtime) -> FrLandmarker:
    return FrLandmarker(_model(LANDMARK_FILE), runtime)


@pytest.fixture(scope="module")
def embedder(runtime: Runtime) -> FrEmbedder:
    return FrEmbedder(_model(FEATURE_FILE), runtime)


def _central_face(
    rgb: np.ndarray, hog: Any, landmarker: FrLandmarker | None = None
) -> DetectedFace:
    """The face nearest the photo's centre (the one LFW labels), with fr_landmark's points."""
    found = hog.detect(rgb)
    assert found, "no face found"
    h, w = rgb.shape[:2]
    face = min(found, key=lambda f: abs(f.box.x1 + f.box.x2 - w) + abs(f.box.y1 + f.box.y2 - h))
    if landmarker is None:
        return face
    (points,) = landmarker.landmarks(rgb, [face.box])
    return DetectedFace(face.box, face.score, face.detector, points)


LFW_ADULTS = (  # public figures photographed as adults: politicians, athletes, actors
    "Vicente_Fox/Vicente_Fox_0001.jpg",
    "Tom_Daschle/Tom_Daschle_0001.jpg",
    "Gray_Davis/Gray_Davis_0001.jpg",
    "Carlos_Menem/Carlos_Menem_0001.jpg",
    "Ricardo_Lagos/Ricardo_Lagos_0001.jpg",
    "Jeremy_Greenstock/Jeremy_Greenstock_0001.jpg",
    "David_Beckham/David_Beckham_0001.jpg",
    "Aaron_Sorkin/Aaron_Sorkin_0001.jpg",
)


@pytest.mark.slow
def test_the_models_are_the_ports(landmarker: FrLandmarker, embedder: FrEmbedder) -> None:
    estimator = FrAgeEstimator(_model(AGE_FILE), Runtime(threads=1))
    assert isinstance(landmarker, Landmarker) and landmarker.scheme == embedder.scheme
    assert isinstance(embedder, Embedder) and embedder.space.dim == 512
    assert isinstance(estimator, AgeEstimator)


@pytest.mark.slow
def test_landmarks_sit_on_the_face(hog: Any, landmarker: FrLandmarker) -> None:
    lfw = need_faces("lfw")
    for name in LFW_ADULTS:
        rgb = rgb_of(lfw / name)
        face = _central_face(rgb, hog, landmarker)
        b = face.box
        assert face.landmarks is not None and face.landmarks.scheme == "arcface5"
        (ex1, ey1), (ex2, ey2), (nx, ny), (mx1, my1), (mx2, my2) = face.landmarks.points
        for x, y in face.landmarks.points:
            assert b.x1 <= x < b.x2 and b.y1 <= y < b.y2, name
        assert max(ey1, ey2) < ny < min(my1, my2), name  # eyes above the nose above the mouth
        assert ex1 < nx < ex2 and mx1 < nx < mx2, name
        # the eyes are a plausible distance apart for the box: a quarter to a half of it
        assert 0.25 * b.width < ex2 - ex1 < 0.55 * b.width, name


@pytest.mark.slow
def test_lfw_pairs_of_one_person_score_higher_than_of_two(
    hog: Any, landmarker: FrLandmarker, embedder: FrEmbedder
) -> None:
    lfw = need_faces("lfw")
    pairs = read_lfw_pairs(lfw)
    chosen = [p for p in pairs if p.same][:8] + [p for p in pairs if not p.same][:8]
    cache: dict[Path, np.ndarray] = {}

    def vector(path: Path) -> np.ndarray:
        if path not in cache:
            rgb = rgb_of(path)
            central = _central_face(rgb, hog, landmarker)
            cache[path] = embedder.embed(rgb, [central])[0]
        return cache[path]

    same = [float(vector(p.a) @ vector(p.b)) for p in chosen if p.same]
    other = [float(vector(p.a) @ vector(p.b)) for p in chosen if not p.same]
    assert min(same) > max(other), (same, other)
    assert np.mean(same) - np.mean(other) > 0.4, (same, other)


@pytest.mark.slow
def test_a_mirrored_photo_embeds_as_the_photo(
    hog: Any, landmarker: FrLandmarker, embedder: FrEmbedder, runtime: Runtime
) -> None:
    rgb = rgb_of(need_faces("lfw") / LFW_ADULTS[0])
    flipped = np.ascontiguousarray(rgb[:, ::-1])
    faces = [_central_face(rgb, hog, landmarker)]
    flipped_faces = [_central_face(flipped, hog, landmarker)]
    (a,) = embedder.embed(rgb, faces)
    (b,) = embedder.embed(flipped, flipped_faces)
    # the crop of the mirror photo is about the mirror of the crop: summing both views makes
    # the vector all but blind to the flip, as one view alone is not
    plain = FrEmbedder(_model(FEATURE_FILE), runtime, mirror=False)
    (c,) = plain.embed(rgb, faces)
    (d,) = plain.embed(flipped, flipped_faces)
    assert float(a @ b) > 0.99
    assert float(a @ b) > float(c @ d)


@pytest.mark.slow
def test_adults_are_estimated_adults(hog: Any, landmarker: FrLandmarker) -> None:
    estimator = FrAgeEstimator(_model(AGE_FILE), Runtime(threads=1))
    lfw = need_faces("lfw")
    ages = []
    for name in LFW_ADULTS:
        rgb = rgb_of(lfw / name)
        ages += estimator.estimate(rgb, [_central_face(rgb, hog)])
    assert len(ages) == len(LFW_ADULTS)
    assert all(18 < age < 90 for age in ages), ages
