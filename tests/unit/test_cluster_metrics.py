"""BCubed and pairwise scores of a clustering: hand-computed cases and a brute-force check."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from countenance.errors import InvalidArgument
from countenance.people.metrics import bcubed, pairwise_f, pairwise_scores

# six faces of three people: two of a, one of b, three of c
TRUTH = ["a", "a", "b", "c", "c", "c"]


def approx(*values: Fraction | float) -> object:
    return pytest.approx(tuple(float(v) for v in values), abs=1e-12)


def test_perfect_clustering_scores_one() -> None:
    predicted = [7, 7, "x", 2, 2, 2]
    assert bcubed(TRUTH, predicted) == approx(1, 1, 1)
    assert pairwise_f(TRUTH, predicted) == pytest.approx(1.0)


def test_all_singletons_have_full_precision_and_recall_of_one_over_class_size() -> None:
    # recall per face is 1/|its class|: a 1/2 twice, b 1, c 1/3 three times -> 3/6
    precision, recall, f = bcubed(TRUTH, [None] * 6)
    assert (precision, recall, f) == approx(1, Fraction(1, 2), Fraction(2, 3))
    assert recall == pytest.approx((1 / 2 + 1 / 2 + 1 + 1 / 3 * 3) / 6)
    # no pair put together: precision 1 (nothing wrong), recall 0 of the 4 true pairs
    assert pairwise_scores(TRUTH, [None] * 6) == approx(1, 0, 0)


def test_one_big_cluster_has_full_recall() -> None:
    # precision per face is |its class| / 6: (2/6 * 2 + 1/6 + 3/6 * 3) / 6 = 7/18
    assert bcubed(TRUTH, [1] * 6) == approx(Fraction(7, 18), 1, Fraction(14, 25))
    # 4 true pairs of the 15 put together
    assert pairwise_scores(TRUTH, [1] * 6) == approx(Fraction(4, 15), 1, Fraction(8, 19))


def test_worked_example() -> None:
    # a a a a b b c  as  {a a a} {a b b} {c}, the c face unassigned
    truth = ["a", "a", "a", "a", "b", "b", "c"]
    predicted = [1, 1, 1, 2, 2, 2, None]
    # precision: 1 1 1 (a in {aaa}), 1/3 (a in {abb}), 2/3 2/3 (b), 1 (c)  -> 17/3 / 7
    # recall: 3/4 3/4 3/4 (a in {aaa}), 1/4 (a in {abb}), 1 1 (b), 1 (c)  -> 11/2 / 7
    p, r = Fraction(17, 21), Fraction(11, 14)
    assert bcubed(truth, predicted) == approx(p, r, 2 * p * r / (p + r))
    assert 2 * p * r / (p + r) == Fraction(374, 469)
    # pairs together: 3 (aaa) + 1 (bb) = 4, of 3 + 3 clustered and 6 + 1 true
    assert pairwise_scores(truth, predicted) == approx(Fraction(2, 3), Fraction(4, 7), 8 / 13)


def test_none_is_a_singleton_not_a_cluster() -> None:
    truth = ["a", "a", "a"]
    assert bcubed(truth, [None, None, None]) == bcubed(truth, [1, 2, 3])
    assert bcubed(truth, [None, None, None])[1] == pytest.approx(1 / 3)
    assert bcubed(truth, ["x", "x", "x"]) == approx(1, 1, 1)
    assert pairwise_f(truth, [None, None, 5]) == pytest.approx(0.0)
    # None among clusters: the unassigned face is alone even beside a cluster named 0
    assert bcubed(["a", "a", "b"], [0, 0, None]) == approx(1, 1, 1)


def test_names_of_labels_do_not_matter() -> None:
    predicted = [1, 1, 1, 2, 2, 2, None]
    renamed = ["q", "q", "q", (0, 1), (0, 1), (0, 1), None]
    truth = ["a", "a", "a", "a", "b", "b", "c"]
    other = [9, 9, 9, 9, None, None, "c"]  # None is an ordinary label in the truth
    assert bcubed(truth, predicted) == bcubed(other, renamed)
    assert pairwise_f(truth, predicted) == pairwise_f(other, renamed)


def _brute_force(truth: list[int], predicted: list[int | None]) -> tuple[float, ...]:
    n = len(truth)
    cluster = [p if p is not None else ("alone", i) for i, p in enumerate(predicted)]
    precision = recall = 0.0
    for i in range(n):
        mine = [j for j in range(n) if cluster[j] == cluster[i]]
        kin = [j for j in range(n) if truth[j] == truth[i]]
        both = sum(1 for j in mine if truth[j] == truth[i])
        precision += both / len(mine)
        recall += both / len(kin)
    together = clustered = same = 0
    for i, j in itertools.combinations(range(n), 2):
        c, t = cluster[i] == cluster[j], truth[i] == truth[j]
        together += c and t
        clustered += c
        same += t
    pp = together / clustered if clustered else 1.0
    pr = together / same if same else 1.0
    return precision / n, recall / n, pp, pr


def test_counting_agrees_with_every_pair() -> None:
    rng = random.Random(3)
    for _ in range(20):
        n = rng.randint(1, 120)
        truth = [rng.randint(0, 15) for _ in range(n)]
        predicted = [None if rng.random() < 0.3 else rng.randint(0, 10) for _ in range(n)]
        bp, br, bpp, bpr = _brute_force(truth, predicted)
        p, r, _ = bcubed(truth, predicted)
        pp, pr, _ = pairwise_scores(truth, predicted)
        assert (p, r, pp, pr) == pytest.approx((bp, br, bpp, bpr), abs=1e-12)


def test_large_input_is_counted_without_pairs() -> None:
    # 10^5 faces of 10^4 identities, each identity split in two clusters of 5: each identity's
    # 45 pairs keep 2 x 10 together
    n = 100_000
    truth = [i // 10 for i in range(n)]
    predicted: list[int | None] = [i // 5 for i in range(n)]
    precision, recall, _ = bcubed(truth, predicted)
    assert (precision, recall) == pytest.approx((1.0, 0.5))
    assert pairwise_scores(truth, predicted)[:2] == pytest.approx((1.0, 20 / 45))


def test_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(InvalidArgument):
        bcubed(["a", "b"], [1])
    with pytest.raises(InvalidArgument):
        pairwise_f([], [])
