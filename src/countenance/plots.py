"""Error-rate figures of ``countenance eval``: DET curves for pairs, FNIR against FPIR for
searches, one curve per model, drawn the way biometrics reports draw them (NIST style: both
axes log, a grid at every decade).

matplotlib is optional and imported here only, on first use, with its Agg backend (no
display, no global pyplot state).

Example::

    det_plot([Curve("dlib", report["det"]["fmr"], report["det"]["fnmr"])], Path("det.png"),
             title="LFW")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countenance.errors import BackendUnavailable

_INSTALL = "pip install 'countenance[plot]'"
_STYLES = ("-", "--", "-.", ":")  # identical curves stay visible one over the other


@dataclass(frozen=True, slots=True)
class Curve:
    """One model's trade-off of two error rates, both in [0, 1], at the same thresholds.

    Example: ``Curve("dlib", x=[1e-4, 1e-2], y=[0.2, 0.05])`` (x: FMR or FPIR).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]


def require() -> None:
    """Raise :class:`BackendUnavailable` now, before a long run, if matplotlib is missing.

    Example: ``require()`` at the start of a command that ends with a plot.
    """
    _canvas_and_figure()


def det_plot(curves: Sequence[Curve], path: Path, *, title: str) -> Path:
    """DET curves: false non-match rate against false match rate, FMR 1e-6..1 and FNMR
    1e-3..1 on log axes; written to ``path`` (its suffix picks the format, e.g. ``.png``).

    Example: ``det_plot([Curve("dlib", fmr, fnmr)], Path("det.png"), title="LFW")``.
    """
    return _plot(
        curves,
        path,
        title=title,
        xlabel="False match rate (FMR)",
        ylabel="False non-match rate (FNMR)",
        xlim=(1e-6, 1.0),
        ylim=(1e-3, 1.0),
        legend="upper right",  # a DET curve never comes near high FMR and high FNMR at once
    )


def fpir_fnir_plot(curves: Sequence[Curve], path: Path, *, title: str) -> Path:
    """Open-set identification: FNIR (mate not the first candidate at or above the
    threshold) against FPIR (a non-mated search returns anyone), log axes down to the
    smallest rate measured (at least 1e-3 shown).

    Example: ``fpir_fnir_plot([Curve("dlib", fpir, fnir)], Path("fnir.png"), title="set")``.
    """
    return _plot(
        curves,
        path,
        title=title,
        xlabel="False positive identification rate (FPIR)",
        ylabel="False negative identification rate (FNIR, rank 1)",
        xlim=(_lowest_decade(c.x for c in curves), 1.0),
        ylim=(_lowest_decade(c.y for c in curves), 1.0),
        legend="best",  # these curves end at FPIR 1, often high up on the right
    )


def _lowest_decade(series: Any) -> float:
    """The decade at or below the smallest positive value, between 1e-6 and 1e-3."""
    positive = [v for values in series for v in values if v > 0]
    if not positive:
        return 1e-3
    decade = 1.0
    while decade > min(positive) and decade > 1e-6:
        decade /= 10
    return min(1e-3, decade)


def _canvas_and_figure() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendUnavailable(_INSTALL) from exc
    return FigureCanvasAgg, Figure


def _plot(
    curves: Sequence[Curve],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    legend: str,
) -> Path:
    canvas_class, figure_class = _canvas_and_figure()
    figure = figure_class(figsize=(7.0, 5.6), dpi=150, layout="constrained")
    canvas_class(figure)
    ax = figure.add_subplot()
    # a rate of 0 has no place on a log axis: drawn below the bottom edge, the curve leaves
    # the plot there instead of stopping short
    floor = ylim[0] / 10
    for i, curve in enumerate(curves):
        ys = [max(float(y), floor) for y in curve.y]
        ax.plot(
            list(curve.x),
            ys,
            _STYLES[i % len(_STYLES)],
            linewidth=1.6,
            # few measured points (a small set): show them, the lines between are guesses
            marker="o" if len(ys) <= 30 else None,
            markersize=3.5,
            label=curve.label,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.grid(True, which="major", linewidth=0.7, alpha=0.6)
    ax.grid(True, which="minor", linewidth=0.4, alpha=0.25)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if curves:
        ax.legend(title="model", loc=legend)
    figure.savefig(path)
    return path
