"""The default dlib pipeline on real faces from ../shared/faces (slow tier: real models)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from countenance.vision.registry import dlib_space
from tests.conftest import need_faces, rgb_of

DLIB_SPACE = dlib_space(4)

pytestmark = pytest.mark.slow


def test_detection_counts_on_group_photos(pipeline) -> None:  # type: ignore[no-untyped-def]
    root = need_faces("detection")
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    counted = found = 0
    for row in rows:
        n = int(row["n_faces"])
        faces = pipeline.detect(rgb_of(root / row["path"]))
        # never more faces than people in the photo: no false positives on these
        assert len(faces) <= n, row["path"]
        counted += n
        found += len(faces)
        if Image.open(root / row["path"]).width >= 1000:
            # large group photos: every face of a counted group is found
            assert len(faces) == n, row["path"]
    # the misses are tiny faces (128-pixel images) and a crowded selfie
    assert found >= 0.75 * counted, (found, counted)


def test_embeddings_are_unit_vectors_of_the_dlib_space(pipeline) -> None:  # type: ignore[no-untyped-def]
    root = need_faces("small_examples")
    faces = pipeline.analyse(rgb_of(root / "barack_obama" / "obama.jpg"))
    assert pipeline.space == DLIB_SPACE and DLIB_SPACE.dim == 128
    assert len(faces) == 1
    vector = faces[0].embedding
    assert vector is not None and vector.dtype == np.float32 and vector.shape == (128,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert faces[0].detected.landmarks is not None
    assert 0.0 < faces[0].quality.score <= 1.0


def test_cnn_fallback_finds_a_tilted_face_hog_misses(pipeline) -> None:  # type: ignore[no-untyped-def]
    path = need_faces("lfw") / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg"
    tilted = np.asarray(Image.fromarray(rgb_of(path)).rotate(45))
    assert pipeline.detector.detect(tilted) == []
    faces = pipeline.detect(tilted)
    assert len(faces) == 1 and faces[0].detector == "cnn"


def test_large_photos_are_downscaled_and_boxes_mapped_back(pipeline) -> None:  # type: ignore[no-untyped-def]
    path = need_faces("lfw") / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg"
    small = rgb_of(path)
    big = np.asarray(Image.fromarray(small).resize((2000, 2000), Image.Resampling.BICUBIC))
    (a,) = pipeline.detect(small)
    (b,) = pipeline.detect(big)
    scale = 2000 / 250
    for u, v in zip(a.box.as_list(), b.box.as_list(), strict=True):
        assert abs(u * scale - v) <= 0.12 * a.box.width * scale
    fa, fb = pipeline.analyse(small)[0], pipeline.analyse(big)[0]
    assert fa.embedding is not None and fb.embedding is not None
    assert float(fa.embedding @ fb.embedding) > 0.97


def test_deepface_pairs_are_separated(pipeline, engine) -> None:  # type: ignore[no-untyped-def]
    root = need_faces("deepface")
    rows = list(csv.DictReader((root / "master.csv").open()))
    cache: dict[str, np.ndarray] = {}
    correct = 0
    for row in rows:
        vectors = []
        for key in ("file_x", "file_y"):
            if row[key] not in cache:
                faces = [
                    f for f in pipeline.analyse(rgb_of(root / row[key])) if f.embedding is not None
                ]
                assert faces, row[key]
                cache[row[key]] = faces[0].embedding
            vectors.append(cache[row[key]])
        same = float(vectors[0] @ vectors[1]) >= engine.bands.same_person
        correct += same == (row["Decision"] == "Yes")
    assert correct / len(rows) >= 0.97, correct


@pytest.mark.parametrize("dataset", ["orl", "yale"])
def test_greyscale_faces_are_found_and_grouped(pipeline, dataset: str) -> None:  # type: ignore[no-untyped-def]
    root = need_faces(dataset)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    people = sorted({r["identity"] for r in rows})[:5]
    vectors: dict[str, list[np.ndarray]] = {p: [] for p in people}
    tried = 0
    for row in rows:
        if row["identity"] in vectors and len(vectors[row["identity"]]) < 3:
            tried += 1
            faces = [
                f for f in pipeline.analyse(rgb_of(root / row["path"])) if f.embedding is not None
            ]
            if faces:
                vectors[row["identity"]].append(faces[0].embedding)
    found = sum(len(v) for v in vectors.values())
    assert found >= 0.9 * tried
    same = [float(a @ b) for v in vectors.values() for i, a in enumerate(v) for b in v[i + 1 :]]
    diff = [
        float(a @ b)
        for i, p in enumerate(people)
        for q in people[i + 1 :]
        for a in vectors[p]
        for b in vectors[q]
    ]
    assert np.mean(same) > np.mean(diff) + 0.03


def test_quality_marks_a_blurred_face_blurry(pipeline) -> None:  # type: ignore[no-untyped-def]
    from PIL import ImageFilter

    path = need_faces("lfw") / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg"
    sharp = pipeline.analyse(rgb_of(path))[0]
    blurred_rgb = np.asarray(Image.fromarray(rgb_of(path)).filter(ImageFilter.GaussianBlur(4)))
    blurred = pipeline.analyse(blurred_rgb)
    assert sharp.quality.skip_reason is None
    assert blurred and blurred[0].quality.sharpness < sharp.quality.sharpness
    assert blurred[0].quality.skip_reason == "blurry" and blurred[0].embedding is None


def test_tiny_faces_are_skipped_as_too_small(pipeline) -> None:  # type: ignore[no-untyped-def]
    from countenance.types import Box
    from countenance.vision.quality import assess

    chip = np.full((150, 150, 3), 128, np.uint8)
    chip[::2] = 0  # sharp stripes
    q = assess(Box(0, 0, 12, 12), chip, min_face_px=20, min_sharpness=2.0)
    assert q.skip_reason == "too_small"
    assert assess(Box(0, 0, 90, 90), chip, min_face_px=20, min_sharpness=2.0).skip_reason is None


def test_path_is_relative_to_repo() -> None:
    assert Path(__file__).resolve().parents[2].joinpath("pyproject.toml").is_file()
