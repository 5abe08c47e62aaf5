"""Error rates of `countenance eval` on synthetic scores with answers worked out by hand:
TAR at FAR (ties, rounding of the allowed count, nothing allowed, missing faces), the DET
curve, and the block computation of every genuine and impostor pair."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from countenance.evaluation import all_pair_scores, error_curve, tar_at_far, threshold_at_far

# Integer-valued scores keep the hand-worked answers exact: impostors 0..99,999, one each;
# genuine 90,000, 90,010, ..., 109,990 (2,000 pairs, half of them above every impostor).
IMPOSTOR = np.arange(100_000, dtype=np.float64)
GENUINE = 90_000 + 10 * np.arange(2_000, dtype=np.float64)


@pytest.mark.parametrize(
    ("far", "expected"),
    [
        # 100 impostors allowed: accept above 99,899, i.e. genuine 99,900 on (j >= 990)
        (1e-3, 1010 / 2000),
        (1e-4, 1001 / 2000),  # 10 allowed: above 99,989
        (1e-5, 1000 / 2000),  # 1 allowed: above 99,998
        (1e-6, 1000 / 2000),  # none allowed: above the highest impostor
        (1.0, 1.0),
    ],
)
def test_tar_at_far_on_shifted_uniform_scores(far: float, expected: float) -> None:
    assert tar_at_far(GENUINE, IMPOSTOR, far) == pytest.approx(expected, abs=1e-12)
    # float32 scores (what the pipeline makes) give the same answer
    assert tar_at_far(GENUINE.astype(np.float32), IMPOSTOR.astype(np.float32), far) == (
        pytest.approx(expected, abs=1e-12)
    )


def test_threshold_is_just_above_the_first_impostor_too_many() -> None:
    impostor = IMPOSTOR
    t = threshold_at_far(impostor, 1e-3)
    assert t == np.nextafter(99_899.0, np.inf)
    assert np.count_nonzero(impostor >= t) == 100
    assert np.count_nonzero(impostor >= np.nextafter(t, -np.inf)) == 101


def test_no_impostor_may_exceed_when_far_allows_less_than_one() -> None:
    impostor = np.array([0.1, 0.2, 0.7], dtype=np.float32)
    genuine = np.array([0.65, 0.7, 0.71, 0.9], dtype=np.float32)
    # in float64: compared as float32 the threshold would round back down onto 0.7
    assert threshold_at_far(impostor, 0.1) > float(np.float32(0.7))
    # the genuine pair tied with the highest impostor is rejected too
    assert tar_at_far(genuine, impostor, 0.1) == 0.5


def test_ties_at_the_threshold_are_rejected_together() -> None:
    impostor = np.array([0.5] * 10 + [0.1] * 90, dtype=np.float32)
    genuine = np.array([0.5] * 4 + [0.6] * 6, dtype=np.float32)
    # 5 of 100 allowed, but the 10 tied at 0.5 go together: all rejected, FAR 0
    assert tar_at_far(genuine, impostor, 0.05) == pytest.approx(0.6)
    # 10 allowed: the tied ten are accepted (FAR exactly 0.1) and with them every genuine
    assert tar_at_far(genuine, impostor, 0.1) == 1.0


def test_allowed_count_survives_float_rounding() -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point, yet 29 of 100 is within 0.29
    scores = np.arange(100, dtype=np.float64)
    t = threshold_at_far(scores, 0.29)
    assert np.count_nonzero(scores >= t) == 29


def test_threshold_matches_the_definition_by_brute_force() -> None:
    rng = np.random.default_rng(7)
    impostor = np.round(rng.normal(0.0, 0.2, 3_000), 2)  # many ties
    # the fraction accepted only changes at a score, so the smallest threshold at which it
    # is <= far is a score or the float just above one
    candidates = np.unique(np.concatenate([impostor, np.nextafter(impostor, np.inf)]))
    fractions = np.array([np.mean(impostor >= c) for c in candidates])
    for far in (0.0, 1e-4, 1e-3, 0.0123, 0.1, 0.5):
        assert threshold_at_far(impostor, far) == candidates[fractions <= far].min(), far
    assert threshold_at_far(impostor, 1.0) < impostor.min()  # everything scored is accepted


def test_a_photo_without_a_face_fails_genuine_and_passes_no_impostor() -> None:
    # -inf and NaN both mean "no face": never accepted, still counted
    genuine = np.array([0.8, -np.inf, np.nan, 0.8])
    impostor = np.array([np.nan, np.nan, -np.inf, 0.3])
    assert tar_at_far(genuine, impostor, 1.0) == 0.5
    assert tar_at_far(genuine, impostor, 0.25) == 0.5  # one allowed: above 0.3 stays
    assert threshold_at_far(impostor, 0.25) < 0.3 + 1e-9
    assert threshold_at_far(impostor, 0.0) > 0.3


def test_nothing_to_measure_is_nan() -> None:
    assert np.isnan(tar_at_far(np.zeros(0), IMPOSTOR, 1e-3))
    assert np.isnan(tar_at_far(GENUINE, np.zeros(0), 1e-3))
    assert np.isnan(threshold_at_far(np.zeros(0), 1e-3))


def test_error_curve_is_a_det_curve() -> None:
    genuine, impostor = GENUINE, IMPOSTOR
    thresholds, fmr, fnmr = error_curve(genuine, impostor, points=50)
    assert 1 < len(thresholds) <= 50
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(fmr) < 0) and np.all(np.diff(fnmr) >= 0)
    assert fmr[-1] == pytest.approx(1e-5)  # the highest impostor alone
    assert fmr[0] == 1.0 and fnmr[0] == 0.0  # the lowest impostor: everything accepted
    for t, x, y in zip(thresholds, fmr, fnmr, strict=True):
        assert x == np.mean(impostor >= t)
        assert y == np.mean(genuine < t)


def test_error_curve_counts_missing_scores_and_skips_their_threshold() -> None:
    thresholds, fpr, fnr = error_curve(np.array([0.9, -np.inf]), np.array([0.5, -np.inf]))
    assert thresholds.tolist() == [0.5]
    assert fpr.tolist() == [0.5] and fnr.tolist() == [0.5]
    empty = error_curve(np.array([0.9]), np.array([-np.inf]))
    assert all(len(a) == 0 for a in empty)


def brute_force_pairs(vectors: np.ndarray, identities: list[str]) -> tuple[list, list]:
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(len(vectors)), 2):
        score = float(vectors[i] @ vectors[j])
        if np.isnan(score):
            score = -np.inf
        (genuine if identities[i] == identities[j] else impostor).append(score)
    return sorted(genuine), sorted(impostor)


@pytest.mark.parametrize("block_elements", [1, 7, 1 << 23])
def test_all_pair_scores_match_a_loop_over_pairs(block_elements: int) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(23, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[[4, 17]] = np.nan  # photos without a face
    identities = [f"p{rng.integers(5)}" for _ in range(23)]
    genuine, impostor = all_pair_scores(vectors, identities, block_elements=block_elements)
    assert genuine.size + impostor.size == 23 * 22 // 2
    expected_genuine, expected_impostor = brute_force_pairs(vectors, identities)
    np.testing.assert_allclose(np.sort(genuine), expected_genuine, atol=1e-6)
    np.testing.assert_allclose(np.sort(impostor), expected_impostor, atol=1e-6)
    # every pair with a faceless photo is there, as -inf
    faceless = 22 + 22 - 1  # each against the 22 others, their own pair once
    assert np.count_nonzero(genuine == -np.inf) + np.count_nonzero(impostor == -np.inf) == (
        faceless
    )


def test_all_pair_scores_counts_on_known_identities() -> None:
    genuine, impostor = all_pair_scores(np.eye(4, dtype=np.float32), ["a", "a", "a", "b"])
    assert genuine.tolist() == [0.0, 0.0, 0.0]
    assert impostor.size == 3
    genuine, impostor = all_pair_scores(np.zeros((1, 4), np.float32), ["a"])
    assert genuine.size == impostor.size == 0
