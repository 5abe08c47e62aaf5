"""Similarity bands of a space: each :class:`EmbeddingSpace` carries its own (see
:class:`~countenance.types.Bands` and the model registry, :mod:`countenance.vision.registry`).

Example::

    bands = bands_for(space)
    bands.band(0.97)  # Band.STRONG
"""

from __future__ import annotations

from countenance.errors import SpaceMismatch
from countenance.types import Bands, EmbeddingSpace

__all__ = ["Bands", "bands_for"]


def bands_for(space: EmbeddingSpace) -> Bands:
    """The bands of ``space``; a space without calibration cannot be banded."""
    if space.bands is None:
        raise SpaceMismatch(f"no calibrated similarity bands for {space.key}")
    return space.bands
