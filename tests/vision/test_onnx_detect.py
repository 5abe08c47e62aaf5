"""faceplugin's RFB-320 ONNX face detector (``fr_detect.onnx``).

The windows, the mapping of boxes back to photo pixels and the suppression run against a fake
session (no model needed); the real model runs on real faces from ../shared/faces. The model
file is looked for under ``$COUNTENANCE_MODEL_DIR`` (default
``~/.local/share/countenance/models``); missing, those tests fail under CI and skip elsewhere.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from countenance.errors import InvalidArgument
from countenance.ports import Detector
from countenance.types import Box
from countenance.vision.onnx.detect import INPUT_H, INPUT_W, RfbDetector, nms, windows
from countenance.vision.onnx.runtime import Runtime
from tests.conftest import need_faces, need_model, rgb_of

# --- fakes: a session that answers with fixed boxes, in the model's output layout ---


class FakeSession:
    """Answers every run with ``boxes`` (fractions of the input) and their face scores."""

    def __init__(self, boxes: list[list[float]], scores: list[float]) -> None:
        n = 4420
        self.boxes = np.zeros((1, n, 4), np.float32)
        self.scores = np.zeros((1, n, 2), np.float32)
        self.scores[0, :, 0] = 1.0
        for i, (box, score) in enumerate(zip(boxes, scores, strict=True)):
            self.boxes[0, i] = box
            self.scores[0, i] = (1 - score, score)
        self.fed: list[np.ndarray] = []

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="input")]

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        assert x.shape == (1, 3, INPUT_H, INPUT_W) and x.dtype == np.float32
        self.fed.append(x)
        return [self.scores, self.boxes]


class FakeRuntime:
    def __init__(self, session: FakeSession) -> None:
        self._session = session

    def session(self, path: Path) -> FakeSession:
        return self._session


def _fake(boxes: list[list[float]], scores: list[float], **kw: Any) -> tuple[RfbDetector, Any]:
    session = FakeSession(boxes, scores)
    return RfbDetector(Path("fake.onnx"), FakeRuntime(session), **kw), session  # type: ignore[arg-type]


def test_boxes_map_back_to_photo_pixels_and_low_scores_go() -> None:
    detector, session = _fake([[0.25, 0.25, 0.5, 0.5], [0.7, 0.1, 0.8, 0.2]], [0.99, 0.5])
    faces = detector.detect(np.zeros((300, 400, 3), np.uint8))  # 4:3, one window
    assert len(session.fed) == 1
    assert [f.box for f in faces] == [Box(100, 75, 200, 150)]
    assert faces[0].detector == "rfb320" and faces[0].landmarks is None
    assert faces[0].score == pytest.approx(0.99)
    # a square photo is stretched to 4:3, as the model was trained: x and y scale apart
    detector, _ = _fake([[0.2, 0.2, 0.5, 0.5]], [0.99])
    (face,) = detector.detect(np.zeros((250, 250, 3), np.uint8))
    assert face.box == Box(50, 50, 125, 125)


def test_the_input_is_rgb_normalised_around_127() -> None:
    detector, session = _fake([], [])
    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[..., 2] = 127
    detector.detect(rgb)
    (x,) = session.fed
    assert x[0, 0].min() == pytest.approx(1.0) and x[0, 1].max() == pytest.approx(-127 / 128)
    assert np.abs(x[0, 2]).max() == 0.0


def test_boxes_past_the_photo_are_clipped() -> None:
    detector, _ = _fake([[-0.1, -0.2, 0.3, 1.2]], [0.95])
    (face,) = detector.detect(np.zeros((240, 320, 3), np.uint8))
    assert face.box == Box(0, 0, 96, 240)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        _fake([], [], min_score=1.5)
    with pytest.raises(InvalidArgument):
        _fake([], [], max_windows=0)
    detector, _ = _fake([], [])
    with pytest.raises(InvalidArgument):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidArgument):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    assert detector.detect(np.zeros((0, 10, 3), np.uint8)) == []


@pytest.mark.parametrize("size", [(250, 250), (600, 604), (1280, 886), (8000, 6000), (900, 90)])
def test_windows_are_bounded_and_every_small_face_fits_one_tile(size: tuple[int, int]) -> None:
    width, height = size
    found = windows(width, height, max_windows=16)
    assert 1 <= len(found) <= 16
    whole, tiles = found[0], found[1:]
    assert whole.x0 == whole.y0 == 0 and whole.scale == max(width / INPUT_W, height / INPUT_H)
    if whole.scale <= 1.25:
        assert tiles == []
        return
    assert tiles
    limit = tiles[0].max_face  # the largest face the tiles answer for
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 1, (200, 2)) * (width - limit, height - limit):
        # a face of that size anywhere lies wholly inside some tile
        assert any(
            t.x0 <= x
            and t.y0 <= y
            and x + limit <= min(width, t.x0 + INPUT_W * t.scale)
            and y + limit <= min(height, t.y0 + INPUT_H * t.scale)
            for t in tiles
        ), (x, y)


def test_nms_drops_overlaps_and_boxes_inside_better_ones() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],  # a face
            [5, 5, 105, 105],  # the same face again, worse
            [20, 50, 80, 100],  # its mouth, seen alone by a tile
            [200, 0, 300, 100],  # another face
            [260, 0, 360, 100],  # a face beside it, overlapping a little
        ],
        np.float32,
    )
    scores = np.array([0.99, 0.9, 0.95, 0.8, 0.85], np.float32)
    assert nms(boxes, scores, 0.4) == [0, 4, 3]


# --- the real model on real faces ---


def _model() -> Path:
    return need_model("model/fr_detect.onnx")


@pytest.fixture(scope="module")
def detector() -> RfbDetector:
    return RfbDetector(_model(), Runtime(threads=1))


def _iou(a: Box, b: Box) -> float:
    w = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return w * h / (a.area + b.area - w * h)


def test_it_is_a_detector_and_finds_the_lfw_face(detector: RfbDetector) -> None:
    assert isinstance(detector, Detector)
    rgb = rgb_of(need_faces("lfw") / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg")
    (face,) = detector.detect(rgb)
    # decoded corners in photo pixels: LFW's deep-funneled face sits in the middle
    box = face.box
    assert box.x1 < 125 < box.x2 and box.y1 < 125 < box.y2
    assert 70 <= box.width <= 160 and box.width <= box.height <= 1.6 * box.width
    assert face.score >= detector.min_score


def test_counts_on_group_photos(detector: RfbDetector) -> None:
    root = need_faces("detection")
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    counted = found = exact = 0
    for row in rows:
        n = int(row["n_faces"])
        faces = detector.detect(rgb_of(root / row["path"]))
        # no false faces on these photos, and at most two misses on one: faces cut by the
        # photo's edge in a crowded selfie
        assert n - 2 <= len(faces) <= n, row["path"]
        counted += n
        found += len(faces)
        exact += len(faces) == n
    # including the three 128-pixel photos of tiny faces, where dlib's HOG finds 3 of 8
    assert exact >= len(rows) - 1, exact
    assert found >= 0.9 * counted, (found, counted)


def test_no_face_in_noise_or_a_gradient(detector: RfbDetector) -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 1200, dtype=np.float32)
    gradient = np.stack([np.tile(ramp, (900, 1))] * 3, axis=-1).astype(np.uint8)
    gradient[..., 1] = gradient[..., 1][:, ::-1]
    assert detector.detect(noise) == []
    assert detector.detect(gradient) == []
    assert detector.detect(np.full((2000, 3000, 3), 200, np.uint8)) == []


def test_a_photo_smaller_than_the_input(detector: RfbDetector) -> None:
    photo = Image.open(need_faces("lfw") / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg")
    small = np.asarray(photo.convert("RGB").resize((110, 110), Image.Resampling.BILINEAR))
    (face,) = detector.detect(small)
    assert face.box.x1 < 55 < face.box.x2 and face.box.y1 < 55 < face.box.y2
    assert face.box.x1 >= 0 and face.box.x2 <= 110 and face.box.y2 <= 110
    assert isinstance(detector.detect(np.zeros((3, 5, 3), np.uint8)), list)


def test_a_very_large_photo_with_a_small_and_a_large_face(detector: RfbDetector) -> None:
    """A 4000x3000 photo: a face of ~110 px (under what the whole-photo pass sees at this
    size) is found by the tiles; a face of ~650 px by the whole-photo pass; boxes land on
    them in the large photo's pixels."""
    lfw = need_faces("lfw") / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg"
    photo = Image.open(lfw).convert("RGB")
    (ref,) = detector.detect(np.asarray(photo))
    canvas = Image.new("RGB", (4000, 3000), (120, 130, 140))
    canvas.paste(photo, (2900, 2300))  # 1:1
    canvas.paste(photo.resize((1500, 1500), Image.Resampling.BICUBIC), (300, 200))  # 6:1
    faces = detector.detect(np.asarray(canvas))
    expected = [
        Box(ref.box.x1 + 2900, ref.box.y1 + 2300, ref.box.x2 + 2900, ref.box.y2 + 2300),
        Box(*(round(v * 6) + d for v, d in zip(ref.box.as_list(), (300, 200) * 2, strict=True))),
    ]
    assert len(faces) == 2, faces
    for want in expected:
        assert max(_iou(f.box, want) for f in faces) > 0.6, (want, faces)
    # the whole-photo pass alone (320x240 for 4000x3000) cannot see the small face
    alone = RfbDetector(_model(), Runtime(threads=1), max_windows=1).detect(np.asarray(canvas))
    assert len(alone) == 1 and _iou(alone[0].box, expected[1]) > 0.6


LFW_FIRST = 10  # the first photos of LFW's manifest, not chosen by hand


@pytest.mark.slow
def test_boxes_overlap_dlib_hog_on_lfw(detector: RfbDetector) -> None:
    from countenance.vision.dlib_models import DlibModels, HogDetector

    hog = HogDetector(DlibModels.load())
    root = need_faces("lfw")
    rows = list(csv.DictReader((root / "manifest.csv").open()))[:LFW_FIRST]
    compared = 0
    for row in rows:
        rgb = rgb_of(root / row["path"])
        ours = detector.detect(rgb)
        assert ours, row["path"]
        for theirs in hog.detect(rgb):
            # dlib's boxes are tighter (brows to chin); the same face still overlaps well
            assert max(_iou(f.box, theirs.box) for f in ours) > 0.5, row["path"]
            compared += 1
    assert compared >= LFW_FIRST - 1
