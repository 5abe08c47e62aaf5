"""Similarity bands, from the false-match rates the model shows on strangers.

A band's lower edge is the cosine similarity that pairs of *different* people exceed at a
stated false-match rate (FMR), measured once per embedding space on impostor pairs of LFW
(all pairs of images of different people; ``benchmarks/calibrate_bands.py`` recomputes it).
They are fixed by rule, not tuned to any evaluation folder:

=========  ===========================  ===========================
band       FMR of its lower edge        meaning
=========  ===========================  ===========================
strong     1 in 100,000                 a lead worth acting on after human review
possible   1 in 1,000                   a lead to check
weak       1 in 100                     expect strangers among these
=========  ===========================  ===========================

Example::

    bands = bands_for(space)
    bands.band(0.97)  # Band.STRONG
"""

from __future__ import annotations

from dataclasses import dataclass

from countenance.errors import SpaceMismatch
from countenance.types import Band, EmbeddingSpace


@dataclass(frozen=True, slots=True)
class Bands:
    """Lower edges of each band (cosine similarity) for one space."""

    strong: float
    possible: float
    weak: float
    erase: float = 1.0
    fmr: tuple[float, float, float] = (1e-5, 1e-3, 1e-2)

    def band(self, similarity: float) -> Band | None:
        """The band of ``similarity``, or None below the weak band."""
        if similarity >= self.strong:
            return Band.STRONG
        if similarity >= self.possible:
            return Band.POSSIBLE
        if similarity >= self.weak:
            return Band.WEAK
        return None

    # ``erase`` is the edge at FMR 1 in 10,000: erasure by photo removes the faces the
    # person's photo matches that well (see governance.controls.erase), so that strangers
    # stay untouched.

    @property
    def same_person(self) -> float:
        """The threshold ``verify`` uses to call two faces one person: FMR 1 in 1,000."""
        return self.possible


# Measured by benchmarks/calibrate_bands.py over LFW impostor pairs (14.4 million pairs of
# photos of different people for one view, 7.3 million over the photos of pairs.txt for four).
_BANDS: dict[tuple[str, str], Bands] = {
    ("dlib_resnet_v1", "1"): Bands(strong=0.9523, possible=0.9248, weak=0.9068, erase=0.9395),
    ("dlib_resnet_v1", "1+tta4"): Bands(strong=0.9562, possible=0.9321, weak=0.9148, erase=0.9454),
}


def bands_for(space: EmbeddingSpace) -> Bands:
    """The bands of ``space``; a space without calibration cannot be banded."""
    try:
        return _BANDS[(space.model, space.version)]
    except KeyError:
        raise SpaceMismatch(f"no calibrated similarity bands for {space.key}") from None
