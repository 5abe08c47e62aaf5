"""Models the operator brings (AuraFace-v1, SFace, buffalo_l): installed from a file with the
sha256 they obtained it with, pinned in a lock file that every load checks, calibrated on a
labelled folder before any store may use them. The files here are tiny synthetic ONNX models
of the right shapes; the photos are drawn faces."""

from __future__ import annotations

import csv
import dataclasses
import json
import stat
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw, ImageFilter

from countenance.cli import cli
from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import InvalidArgument
from countenance.vision import registry
from countenance.vision.calibration import MIN_IMPOSTOR_PAIRS, calibrate, calibrate_brought
from countenance.vision.models import (
    LOCK_FILE,
    LicenceNotAccepted,
    ModelMissing,
    ModelNotCalibrated,
    ModelStore,
    load_pipeline,
    settings_for,
    sha256_of,
    space_of,
)
from countenance.vision.registry import BROUGHT, pipeline_spec
from tests.conftest import need_model

# --- synthetic models and photos ---------------------------------------------------------------


def tiny_onnx(path: Path, *, dim: int = 512, size: int = 112, batch: int | str = 1) -> Path:
    """An ONNX embedder of the given shapes: 8x8 average pooling, then a fixed random
    projection to ``dim`` (a function of the crop, so faces get distinct vectors)."""
    cells = 3 * (size // 8) ** 2
    weights = np.random.default_rng(7).normal(size=(cells, dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]
            ),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what any ONNX Runtime of the last years reads
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def drawn_face(identity: int, take: int, size: int = 250) -> Image.Image:
    """A cartoon face that the RFB-320 detector finds: an identity fixes its colours and
    proportions, each take moves it a little."""
    who = np.random.default_rng(identity)
    jitter = np.random.default_rng(10_000 + 100 * identity + take)
    background = tuple(int(v) for v in who.integers(40, 200, 3))
    skin = tuple(int(v) for v in np.array([224, 172, 140]) + who.integers(-30, 30, 3))
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    cx = size / 2 + float(jitter.integers(-8, 8))
    cy = size / 2 + float(jitter.integers(-5, 5))
    w, h = 90 + float(who.integers(-10, 10)), 120 + float(who.integers(-10, 10))
    d.ellipse([cx - w / 2 - 6, cy - h / 2 - 20, cx + w / 2 + 6, cy + h / 6], fill=(40, 30, 20))
    d.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=skin)
    ey, ex = cy - h * 0.1, w * (0.2 + 0.05 * float(who.random()))
    for side in (-1, 1):
        x = cx + side * ex
        d.ellipse([x - 9, ey - 5, x + 9, ey + 5], fill=(255, 255, 255))
        d.ellipse([x - 4, ey - 4, x + 4, ey + 4], fill=(30, 20, 10))
        d.line([x - 11, ey - 12, x + 11, ey - 13], fill=(50, 30, 20), width=3)
    nose = tuple(max(0, c - 30) for c in skin)
    d.polygon([(cx, ey + 5), (cx - 8, cy + h * 0.15), (cx + 8, cy + h * 0.15)], fill=nose)
    d.chord([cx - w * 0.22, cy + h * 0.2, cx + w * 0.22, cy + h * 0.32], 0, 180, fill=(150, 50, 50))
    return img.filter(ImageFilter.GaussianBlur(1.5))


def labelled_folder(root: Path, identities: int, takes: int = 2) -> Path:
    """A folder of drawn faces with manifest.csv (path,identity)."""
    root.mkdir(parents=True)
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "identity"])
        for person in range(identities):
            for take in range(takes):
                name = f"p{person:03d}_{take}.png"
                drawn_face(person, take).save(root / name)
                writer.writerow([name, f"person{person:03d}"])
    return root


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture()
def unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The brought entries as they would read where no public record of the file's sha256
    is known: the operator's stated sha256 is then the only pin. (The real entries pin the
    real files, which a synthetic model cannot match.)"""
    for name, model in BROUGHT.items():
        monkeypatch.setitem(BROUGHT, name, dataclasses.replace(model, sha256=None, size=None))


@pytest.fixture()
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture()
def with_default_models(store: ModelStore) -> ModelStore:
    """``store`` with the default models' package linked in (detector, landmarks), as a
    brought model runs behind them; missing, this fails under CI and skips elsewhere."""
    package = need_model("model/fr_detect.onnx").parents[1]
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / package.name).symlink_to(package, target_is_directory=True)
    return store


@pytest.fixture()
def runner(store: ModelStore) -> Iterator[CliRunner]:
    yield CliRunner(
        env={
            "COUNTENANCE_MODEL_DIR": str(store.root),
            "COUNTENANCE_AGE_ESTIMATOR": "none",  # drawn faces have no age worth estimating
            "COUNTENANCE_CNN_FALLBACK": "false",
            "COUNTENANCE_MODEL_THREADS": "1",
        }
    )


def invoke(runner: CliRunner, data: Path, *args: str) -> Result:
    return runner.invoke(cli, ["--data", str(data), "models", *args])


# --- installing --------------------------------------------------------------------------------


def test_install_copies_privately_and_pins_the_file_in_a_lock(
    tmp_path: Path, store: ModelStore, unpinned: None
) -> None:
    source = tiny_onnx(tmp_path / "glintr100.onnx")
    digest = sha256_of(source)
    path = store.install_brought("auraface", source, sha256=digest.upper())
    folder = store.root / "brought" / "auraface"
    assert path == folder / "glintr100.onnx" and path.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.root / "brought").stat().st_mode) == 0o700
    lock = json.loads((folder / LOCK_FILE).read_text())
    assert lock["sha256"] == digest and lock["size"] == source.stat().st_size
    assert lock["bands"] is None and lock["accepted_licence"] is None
    assert stat.S_IMODE((folder / LOCK_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["glintr100.onnx", LOCK_FILE]
    assert store.brought_path("auraface") == path


def test_a_file_changed_after_install_is_refused_at_load(
    tmp_path: Path, store: ModelStore, unpinned: None
) -> None:
    source = tiny_onnx(tmp_path / "glintr100.onnx")
    path = store.install_brought("auraface", source, sha256=sha256_of(source))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ModelMissing, match="changed after it was installed"):
        store.brought_path("auraface")
    with pytest.raises(ModelMissing, match="changed after it was installed"):
        load_pipeline("auraface", Settings(model_dir=store.root))


def test_a_wrong_sha256_is_refused_and_nothing_is_left(
    tmp_path: Path, store: ModelStore, unpinned: None
) -> None:
    source = tiny_onnx(tmp_path / "glintr100.onnx")
    other = sha256_of(tiny_onnx(tmp_path / "other.onnx", dim=128))
    with pytest.raises(ModelMissing, match="not the file you obtained"):
        store.install_brought("auraface", source, sha256=other)
    folder = store.root / "brought" / "auraface"
    assert list(folder.iterdir()) == []  # no model, no lock, no temporary file
    assert store.lock("auraface") is None
    with pytest.raises(InvalidArgument, match="64 hex digits"):
        store.install_brought("auraface", source, sha256="abc123")


def test_the_pinned_sha256_refuses_any_other_file(tmp_path: Path, store: ModelStore) -> None:
    source = tiny_onnx(tmp_path / "glintr100.onnx")
    pinned = BROUGHT["auraface"].sha256
    assert pinned is not None and len(pinned) == 64
    with pytest.raises(ModelMissing, match="pinned here"):  # the file's own hash, not the pin
        store.install_brought("auraface", source, sha256=sha256_of(source))
    with pytest.raises(ModelMissing, match="bytes; the AuraFace-v1"):  # the pin, another file
        store.install_brought("auraface", source, sha256=pinned)
    assert store.lock("auraface") is None


def test_a_model_of_another_shape_is_refused(
    tmp_path: Path, store: ModelStore, unpinned: None
) -> None:
    wide = tiny_onnx(tmp_path / "wide.onnx", dim=512)
    with pytest.raises(ModelMissing, match=r"answers \(1, 512\), not the \(1, 128\)"):
        store.install_brought("sface", wide, sha256=sha256_of(wide))
    large = tiny_onnx(tmp_path / "large.onnx", size=128)
    with pytest.raises(ModelMissing, match=r"not the one float32 input \(1, 3, 112, 112\)"):
        store.install_brought("auraface", large, sha256=sha256_of(large))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelMissing, match="not an ONNX model"):
        store.install_brought("auraface", junk, sha256=sha256_of(junk))
    assert store.lock("sface") is None and store.lock("auraface") is None
    assert not (store.root / "brought" / "sface" / BROUGHT["sface"].file).exists()
    # a free batch dimension, as insightface's files declare, is accepted
    free = tiny_onnx(tmp_path / "free.onnx", batch="N")
    store.install_brought("auraface", free, sha256=sha256_of(free))
    assert store.lock("auraface") is not None


def test_buffalo_l_needs_its_non_commercial_licence_accepted(
    tmp_path: Path, store: ModelStore, unpinned: None
) -> None:
    source = tiny_onnx(tmp_path / "w600k_r50.onnx")
    digest = sha256_of(source)
    for accepted in (None, "commercial"):
        with pytest.raises(LicenceNotAccepted, match="non-commercial research purposes only"):
            store.install_brought("buffalo_l", source, sha256=digest, accept_licence=accepted)
    assert not (store.root / "brought" / "buffalo_l").exists()
    store.install_brought("buffalo_l", source, sha256=digest, accept_licence="non-commercial")
    lock_path = store.root / "brought" / "buffalo_l" / LOCK_FILE
    lock = json.loads(lock_path.read_text())
    assert lock["accepted_licence"] == "non-commercial" and lock["installed_by"]
    assert store.brought_path("buffalo_l").name == "w600k_r50.onnx"
    lock["accepted_licence"] = None  # a lock that does not record the acceptance
    lock_path.write_text(json.dumps(lock))
    with pytest.raises(LicenceNotAccepted, match="--accept-licence non-commercial"):
        store.brought_path("buffalo_l")


def test_the_registry_lists_brought_models_installed_or_not(
    tmp_path: Path, store: ModelStore, unpinned: None
) -> None:
    settings = Settings(model_dir=store.root)
    spec = pipeline_spec("sface")
    assert spec.packages == ("faceplugin", "dlib") and spec.args == ("sface",)
    before = space_of("sface", settings)
    assert before.dim == 128 and before.bands is None
    assert BROUGHT["sface"].preprocessing.describe().startswith("NCHW 1x3x112x112 float32, RGB")
    assert (BROUGHT["sface"].preprocessing.mean, BROUGHT["sface"].preprocessing.std) == (0, 1)
    source = tiny_onnx(tmp_path / "sface.onnx", dim=128)
    digest = sha256_of(source)
    store.install_brought("sface", source, sha256=digest)
    after = space_of("sface", settings)
    assert after.version == f"{digest[:12]}+mirror" and after.bands is None
    chosen = settings_for(after, settings.replace(model="dlib"))
    assert chosen is not None and chosen.model == "sface"
    with pytest.raises(InvalidArgument, match="auraface, buffalo_l, dlib, faceplugin, sface"):
        pipeline_spec("nope")


def test_the_real_entries_pin_their_files_and_state_their_preprocessing() -> None:
    aura, sface, buffalo = BROUGHT["auraface"], BROUGHT["sface"], BROUGHT["buffalo_l"]
    assert (aura.dim, sface.dim, buffalo.dim) == (512, 128, 512)
    for model in (aura, buffalo):
        p = model.preprocessing
        assert (p.channels, p.mean, p.std, p.size) == ("RGB", 127.5, 127.5, 112)
    assert aura.licence.startswith("Apache-2.0") and sface.licence.startswith("Apache-2.0")
    assert aura.accept is None and sface.accept is None and buffalo.accept == "non-commercial"
    spaces = {space_of(n, Settings(model_dir=Path("/nonexistent"))) for n in BROUGHT}
    assert len(spaces) == 3  # vectors of two models never meet
    assert all(m.sha256 and len(m.sha256) == 64 and m.size for m in BROUGHT.values())


# --- calibration --------------------------------------------------------------------------------


def test_bands_are_the_impostor_quantiles_at_each_false_match_rate() -> None:
    rng = np.random.default_rng(3)
    people = rng.normal(size=(250, 32))
    vectors = np.concatenate([people + 0.3 * rng.normal(size=people.shape) for _ in range(2)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [f"p{i}" for i in range(250)] * 2
    result = calibrate(vectors, labels)
    impostor = np.array(
        [vectors[i] @ vectors[j] for i, j in combinations(range(500), 2) if labels[i] != labels[j]]
    )
    assert result.impostor_pairs == impostor.size == 500 * 499 // 2 - 250
    assert result.genuine_pairs == 250
    for band, fmr in (("weak", 1e-2), ("possible", 1e-3), ("erase", 1e-4), ("strong", 1e-5)):
        expected = np.quantile(impostor, 1 - fmr)
        assert getattr(result.bands, band) == pytest.approx(expected, abs=1e-5), band
    assert result.bands.weak < result.bands.possible < result.bands.erase < result.bands.strong
    assert result.edges["possible"].tmr is not None and result.edges["possible"].tmr > 0.5
    with pytest.raises(InvalidArgument, match="too few"):
        calibrate(vectors[:100], labels[:100])
    same = np.tile(vectors[:1], (500, 1))
    with pytest.raises(InvalidArgument, match="do not rise"):
        calibrate(same, labels)


def test_use_is_refused_until_calibrated(tmp_path: Path, store: ModelStore, unpinned: None) -> None:
    settings = Settings(data_dir=tmp_path / "data", model="dlib", model_dir=store.root)
    with pytest.raises(ModelMissing, match="countenance models install auraface --from"):
        store.calibrated("auraface")
    source = tiny_onnx(tmp_path / "glintr100.onnx")
    store.install_brought("auraface", source, sha256=sha256_of(source))
    with pytest.raises(ModelNotCalibrated, match="countenance models calibrate auraface"):
        load_pipeline("auraface", settings)
    with Engine(settings) as db, pytest.raises(ModelNotCalibrated, match="models calibrate"):
        db.use_model("auraface", actor="test")


@pytest.mark.slow
def test_calibrate_through_the_pipeline_stores_bands_in_the_lock(
    tmp_path: Path, with_default_models: ModelStore, unpinned: None
) -> None:
    store = with_default_models
    settings = Settings(
        model_dir=store.root, age_estimator="none", cnn_fallback=False, model_threads=1
    )
    source = tiny_onnx(tmp_path / "face_recognition_sface_2021dec.onnx", dim=128)
    store.install_brought("sface", source, sha256=sha256_of(source))
    photos = labelled_folder(tmp_path / "photos", identities=230)
    result = calibrate_brought("sface", photos, settings)
    assert result.skipped == 0 and result.photos == 460 and result.identities == 230
    assert result.impostor_pairs >= MIN_IMPOSTOR_PAIRS
    lock = store.lock("sface")
    assert lock is not None and lock.bands == result.bands
    assert lock.calibration is not None and lock.calibration["impostor_pairs"] == 105_340
    assert space_of("sface", settings).bands == result.bands
    pipeline = load_pipeline("sface", settings)  # calibrated: it loads now
    assert pipeline.space.bands == result.bands and pipeline.space.dim == 128


# --- through the CLI ------------------------------------------------------------------------------


def test_cli_refuses_wrong_files_missing_licence_and_changed_files(
    tmp_path: Path, store: ModelStore, runner: CliRunner, unpinned: None
) -> None:
    data = tmp_path / "data"
    source = tiny_onnx(tmp_path / "glintr100.onnx")
    digest = sha256_of(source)

    no_sha = invoke(runner, data, "install", "auraface", "--from", str(source))
    assert no_sha.exit_code == 2 and "--from FILE --sha256 HEX" in no_sha.output

    wrong = invoke(runner, data, "install", "auraface", "--from", str(source), "--sha256", "0" * 64)
    assert wrong.exit_code == 1 and isinstance(wrong.exception, ModelMissing)
    assert "not the file you obtained" in str(wrong.exception)

    shaped = tiny_onnx(tmp_path / "sface.onnx", dim=512)
    args = ["install", "sface", "--from", str(shaped), "--sha256", sha256_of(shaped)]
    bad_shape = invoke(runner, data, *args)
    assert bad_shape.exit_code == 1 and "not the (1, 128) embedding" in str(bad_shape.exception)

    args = ["install", "buffalo_l", "--from", str(source), "--sha256", digest]
    unaccepted = invoke(runner, data, *args)
    assert unaccepted.exit_code == 1 and isinstance(unaccepted.exception, LicenceNotAccepted)
    assert "non-commercial research" in str(unaccepted.exception)
    accepted = invoke(runner, data, *args, "--accept-licence", "non-commercial")
    assert accepted.exit_code == 0, accepted.output
    use = invoke(runner, data, "use", "buffalo_l")  # using it needs the acceptance too
    assert use.exit_code == 1 and isinstance(use.exception, LicenceNotAccepted)

    installed = invoke(
        runner, data, "install", "auraface", "--from", str(source), "--sha256", digest
    )
    assert installed.exit_code == 0, installed.output
    assert "calibrate auraface" in installed.output
    path = store.root / "brought" / "auraface" / "glintr100.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    changed = invoke(runner, data, "use", "auraface")
    assert changed.exit_code == 1 and "changed after it was installed" in str(changed.exception)
    photos = tmp_path / "photos"
    photos.mkdir()
    calibrated = invoke(runner, data, "calibrate", "auraface", "--photos", str(photos))
    assert calibrated.exit_code == 1 and "changed after it was installed" in str(
        calibrated.exception
    )


@pytest.mark.slow
def test_cli_install_calibrate_use(
    tmp_path: Path, with_default_models: ModelStore, runner: CliRunner, unpinned: None
) -> None:
    store, data = with_default_models, tmp_path / "data"
    source = tiny_onnx(tmp_path / "glintr100.onnx", batch="None")
    args = ["install", "auraface", "--from", str(source), "--sha256", sha256_of(source)]
    assert invoke(runner, data, *args).exit_code == 0

    refused = invoke(runner, data, "use", "auraface")
    assert refused.exit_code == 1 and isinstance(refused.exception, ModelNotCalibrated)
    assert "countenance models calibrate auraface --photos DIR" in str(refused.exception)

    listing = json.loads(invoke(runner, data, "list", "--json").output)
    aura = {b["name"]: b for b in listing["brought"]}["auraface"]
    assert aura["installed"] is True and aura["calibrated"] is False
    assert aura["preprocessing"]["channels"] == "RGB" and aura["preprocessing"]["mean"] == 127.5
    assert aura["licence"].startswith("Apache-2.0") and aura["sha256"] == sha256_of(source)
    assert {b["name"] for b in listing["brought"]} == set(BROUGHT)

    photos = labelled_folder(tmp_path / "photos", identities=230)
    done = invoke(runner, data, "calibrate", "auraface", "--photos", str(photos), "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output[done.output.index("{") :])
    assert report["photos"] == 460 and report["impostor_pairs"] == 105_340
    lock = store.lock("auraface")
    assert lock is not None and lock.bands is not None
    assert report["bands"] == dataclasses.asdict(lock.bands)

    switched = invoke(runner, data, "use", "auraface", "--json")
    assert switched.exit_code == 0, switched.output
    settings = Settings(data_dir=data, model_dir=store.root, model="dlib")
    with Engine(settings) as db:  # the store now answers in the brought model's space
        assert db.space == space_of("auraface", settings) and db.settings.model == "auraface"
        assert db.bands == lock.bands


def test_registry_module_names_no_model_host() -> None:
    text = Path(registry.__file__).read_text().lower()
    for host in ("huggingface", "github.com", "http://", "https://"):
        assert host not in text
