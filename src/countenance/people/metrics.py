"""How well a clustering of faces matches who they are: BCubed and pairwise scores.

Both compare a predicted cluster per face with its true identity. A face predicted ``None``
(unassigned: in no person) is a cluster of its own. Both count through the contingency table
of (cluster, identity) pairs, never through all pairs of faces, so 10^6 faces take a second.

BCubed (Amigó, Gonzalo, Artiles and Verdejo, "A comparison of extrinsic clustering evaluation
metrics based on formal constraints", Information Retrieval 12, 2009): a face's precision is
the share of its cluster that has its identity, its recall the share of its identity that is
in its cluster; precision and recall are the means over faces, F their harmonic mean.

Pairwise: precision is the share of pairs of faces put in one cluster that are one identity,
recall the share of pairs of one identity put in one cluster. Where there is no pair to
count (no cluster of two, or no identity of two) the score is 1: nothing was done wrong.

Example::

    precision, recall, f = bcubed(["a", "a", "b"], [1, 1, None])   # (1.0, 1.0, 1.0)
    pairwise_f(["a", "a", "b"], [1, 2, 2])                         # 0.0
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

from countenance.errors import InvalidArgument

__all__ = ["bcubed", "pairwise_f", "pairwise_scores"]

Counts = npt.NDArray[np.int64]


def bcubed(
    truth: Sequence[Hashable], predicted: Sequence[Hashable | None]
) -> tuple[float, float, float]:
    """BCubed ``(precision, recall, F)`` of ``predicted`` clusters against ``truth``
    identities, one entry per face; ``None`` predicted is a singleton cluster.

    Example: ``bcubed(["a", "a", "b"], [1, 1, 1])`` is ``(5/9, 1.0, 5/7)``.
    """
    cells, cluster_size, identity_size = _contingency(truth, predicted)
    n = float(cluster_size.sum())
    shared = cells[:, 2].astype(np.float64) ** 2
    precision = float(np.sum(shared / cluster_size[cells[:, 0]]) / n)
    recall = float(np.sum(shared / identity_size[cells[:, 1]]) / n)
    return precision, recall, _harmonic(precision, recall)


def pairwise_scores(
    truth: Sequence[Hashable], predicted: Sequence[Hashable | None]
) -> tuple[float, float, float]:
    """Pairwise ``(precision, recall, F)`` over pairs of faces; ``None`` predicted is a
    singleton cluster; 1 where there is no pair to count.

    Example: ``pairwise_scores(["a", "a", "b"], [1, 1, 1])`` is ``(1/3, 1.0, 0.5)``.
    """
    cells, cluster_size, identity_size = _contingency(truth, predicted)
    together = _pairs(cells[:, 2])
    clustered = _pairs(cluster_size)
    same = _pairs(identity_size)
    precision = together / clustered if clustered else 1.0
    recall = together / same if same else 1.0
    return precision, recall, _harmonic(precision, recall)


def pairwise_f(truth: Sequence[Hashable], predicted: Sequence[Hashable | None]) -> float:
    """Pairwise F of ``predicted`` against ``truth`` (see :func:`pairwise_scores`).

    Example: ``pairwise_f(["a", "a", "b"], [1, 1, None])`` is 1.0.
    """
    return pairwise_scores(truth, predicted)[2]


def _contingency(
    truth: Sequence[Hashable], predicted: Sequence[Hashable | None]
) -> tuple[Counts, Counts, Counts]:
    """The non-empty cells ``[cluster, identity, faces]`` of the contingency table, and the
    faces in each cluster and each identity (indexed by the cells' codes)."""
    if len(truth) != len(predicted):
        raise InvalidArgument(f"{len(truth)} true labels but {len(predicted)} predicted")
    if len(truth) == 0:
        raise InvalidArgument("no faces to score")
    identities = _codes(truth)
    clusters = _codes(predicted, none_alone=True)
    width = int(identities.max()) + 1
    keys, faces = np.unique(clusters * width + identities, return_counts=True)
    cells = np.stack([keys // width, keys % width, faces], axis=1).astype(np.int64)
    return cells, np.bincount(clusters), np.bincount(identities)


def _codes(labels: Sequence[Hashable | None], *, none_alone: bool = False) -> Counts:
    """0..m-1 for the distinct labels, in order of appearance; with ``none_alone`` each
    ``None`` gets a code of its own."""
    seen: dict[Hashable, int] = {}
    codes = np.empty(len(labels), dtype=np.int64)
    alone = 0  # codes given to a None so far
    for i, label in enumerate(labels):
        if label is None and none_alone:
            codes[i] = len(seen) + alone
            alone += 1
        else:
            codes[i] = seen.setdefault(label, len(seen) + alone)
    return codes


def _pairs(sizes: Counts) -> int:
    s = sizes.astype(np.int64)
    return int(np.sum(s * (s - 1) // 2))


def _harmonic(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0
