"""`countenance eval` on real labelled faces: the LFW protocol on a slice of its folds, and
identification on the deepface set. The full runs are in the README; these check that the
protocols run end to end through the engine and land where the model is known to be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.evaluation import eval_identify, eval_pairs, read_lfw_pairs
from tests.conftest import need_faces

pytestmark = pytest.mark.slow


def lfw_slice(tmp_path: Path, per_fold: int) -> Path:
    """An LFW-layout folder with the first ``per_fold`` matched and mismatched pairs of each
    of the real folds (people linked, not copied)."""
    lfw = need_faces("lfw")
    lines = (lfw / "pairs.txt").read_text().splitlines()
    folds, n = (int(x) for x in lines[0].split())
    body = lines[1:]
    kept: list[str] = []
    for fold in range(folds):
        start = fold * 2 * n
        kept += body[start : start + per_fold] + body[start + n : start + n + per_fold]
    out = tmp_path / "lfw"
    out.mkdir()
    (out / "pairs.txt").write_text(f"{folds}\t{per_fold}\n" + "\n".join(kept) + "\n")
    for pair in read_lfw_pairs(out):
        for image in (pair.a, pair.b):
            if not image.parent.exists():
                image.parent.symlink_to(lfw / image.parent.name)
    return out


def test_lfw_pairs_protocol_on_a_slice_of_every_fold(tmp_path: Path) -> None:
    folder = lfw_slice(tmp_path, per_fold=12)
    report = eval_pairs(folder, Settings(), workers=2)
    assert report["n_pairs"] == 5 * 24
    assert report["n_no_face"] == 0
    assert len(report["fold_accuracies"]) == 5
    assert report["accuracy_mean"] >= 0.95
    assert 0.0 <= report["tar_at_far_1e-3"] <= 1.0


def test_eval_pairs_cli_json_keys(tmp_path: Path) -> None:
    folder = lfw_slice(tmp_path, per_fold=3)
    out = subprocess.run(
        [sys.executable, "-m", "countenance", "eval", "pairs", str(folder), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    assert {"accuracy_mean", "accuracy_std", "tar_at_far_1e-3", "n_pairs", "n_no_face"} <= set(
        report
    )
    assert report["n_pairs"] == 30
    assert "pairs" in out.stderr  # progress bar


def test_identify_protocol_on_deepface() -> None:
    folder = need_faces("deepface")
    report = eval_identify(folder, Settings(), workers=2)
    assert {"rank1", "rank10", "fnir_at_fpir_0.01", "n_gallery", "n_mated", "n_nonmated"} <= set(
        report
    )
    assert report["n_no_face"] == 0
    # every probe counted: 64 photos, 13 people and 3 single-photo ones
    assert report["n_mated"] + report["n_nonmated"] + report["n_gallery_photos"] == 64
    # the misses here are mislabelled: one actress is also labelled "single_couple" and her
    # mirror image "single_img11_reflection"
    assert report["rank1"] >= 0.8
    assert report["rank10"] == 1.0
