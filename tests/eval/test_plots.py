"""The figures of `countenance eval --plot`, drawn from synthetic curves, and the error that
says what to install when matplotlib is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from countenance.errors import BackendUnavailable
from countenance.evaluation import error_curve
from countenance.plots import Curve, det_plot, fpir_fnir_plot, require

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_det(shift: float, n_impostor: int = 200_000) -> Curve:
    rng = np.random.default_rng(int(shift * 100))
    impostor = rng.normal(0.0, 0.1, n_impostor)
    genuine = rng.normal(shift, 0.1, 5_000)
    _, fmr, fnmr = error_curve(genuine, impostor)
    return Curve(f"model at {shift}", fmr.tolist(), fnmr.tolist())


def test_det_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    curves = [synthetic_det(0.4), synthetic_det(0.5), synthetic_det(0.5)]
    out = det_plot(curves, tmp_path / "det.png", title="DET on synthetic scores")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 30_000  # axes, grid, three curves, legend: not an empty canvas
    from matplotlib.image import imread

    height, width = imread(out).shape[:2]
    assert (width, height) == (1050, 840)  # 7 x 5.6 inches at 150 dpi


def test_fpir_fnir_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    curve = Curve("dlib", [0.02, 0.1, 0.5, 1.0], [0.4, 0.2, 0.05, 0.0])
    out = fpir_fnir_plot([curve], tmp_path / "fnir.png", title="identification")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000


def test_missing_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'countenance\[plot\]'"):
        require()
    with pytest.raises(BackendUnavailable):
        det_plot([synthetic_det(0.5)], tmp_path / "det.png", title="x")
    assert not (tmp_path / "det.png").exists()
