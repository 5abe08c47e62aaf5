"""An ArcFace-family embedder over ONNX Runtime, for the models an operator brings
(:data:`~countenance.vision.registry.BROUGHT`: AuraFace-v1, OpenCV's SFace, buffalo_l).

They differ only in what their entry's :class:`~countenance.vision.registry.Preprocessing`
states: the face is aligned on insightface's five-point template to 112 x 112 (the same
least-squares similarity as insightface's ``norm_crop`` and OpenCV's ``alignCrop``), then fed
as ``(pixel - mean) / std`` in the entry's channel order, NCHW, one face at a time (SFace's
file has a fixed batch of 1). With ``mirror`` the crop's mirror image is embedded too and the
two summed before normalising, as :class:`~countenance.vision.onnx.faceplugin.FrEmbedder`
does. Vectors are L2-normalised and compared by cosine. :func:`check_shapes` is what such a
file must look like to be installed.

Example::

    model = BROUGHT["auraface"]
    embedder = ArcFaceEmbedder(store.brought_path("auraface"), Runtime(), model.preprocessing,
                               space_of("auraface", settings))
    vectors = embedder.embed(rgb, faces)          # float32[N, 512], unit rows
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from countenance.errors import BackendError, InvalidArgument, ModelMissing
from countenance.ports import RGB, Vectors
from countenance.types import DetectedFace, EmbeddingSpace
from countenance.vision.align import ARCFACE_SCHEME
from countenance.vision.onnx.embedding import arcface_crops, unit_vectors
from countenance.vision.onnx.runtime import Runtime
from countenance.vision.registry import BroughtModel, Preprocessing

__all__ = ["ArcFaceEmbedder", "check_shapes"]


class ArcFaceEmbedder:
    """Embeds ArcFace-aligned crops with the ONNX model at ``model_path``, prepared as
    ``preprocessing`` states, into ``space`` (whose bands the pipeline reports).

    Example: ``ArcFaceEmbedder(path, Runtime(), Preprocessing("RGB", 127.5, 127.5), space)``.
    """

    scheme = ARCFACE_SCHEME

    def __init__(
        self,
        model_path: Path,
        runtime: Runtime,
        preprocessing: Preprocessing,
        space: EmbeddingSpace,
    ) -> None:
        if preprocessing.channels not in ("RGB", "BGR"):
            raise InvalidArgument(f"channels must be RGB or BGR, not {preprocessing.channels}")
        self.space = space
        self.preprocessing = preprocessing
        self._session = runtime.session(Path(model_path))
        self._input = str(self._session.get_inputs()[0].name)

    def align(self, rgb: RGB, faces: list[DetectedFace]) -> list[RGB]:
        return arcface_crops(rgb, faces, self.preprocessing.size, self.space.model)

    def embed(self, rgb: RGB, faces: list[DetectedFace]) -> Vectors:
        crops = self.align(rgb, faces)
        return unit_vectors(
            crops, self.embed_crop, mirror=self.preprocessing.mirror, dim=self.space.dim
        )

    def embed_crop(self, crop: RGB) -> npt.NDArray[np.float32]:
        """The raw (unnormalised) output for one aligned RGB crop, no mirror."""
        return self._run(self.input_of(crop))

    def input_of(self, crop: RGB) -> npt.NDArray[np.float32]:
        """The model's input for one aligned RGB crop: float32[1, 3, size, size]."""
        p = self.preprocessing
        channels = crop[:, :, ::-1] if p.channels == "BGR" else crop
        x = (channels.astype(np.float32) - np.float32(p.mean)) / np.float32(p.std)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def _run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = self._session.run(None, {self._input: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def check_shapes(model: BroughtModel, path: Path) -> None:
    """Refuse the ONNX file at ``path`` unless ONNX Runtime loads it, it takes one float32
    input of ``model.input_shape`` (any batch size) and answers ``model.output_shape`` for
    one zero crop."""
    try:
        session = Runtime(threads=1).session(path)
    except BackendError as exc:
        raise ModelMissing(f"{model.file}: not an ONNX model ONNX Runtime can load") from exc
    inputs = session.get_inputs()
    declared = [tuple(i.shape) for i in inputs]
    if (
        len(inputs) != 1
        or inputs[0].type != "tensor(float)"
        or not _fits(declared[0], model.input_shape)
    ):
        raise ModelMissing(
            f"{model.file} takes {_shapes(inputs)}, not the one float32 input"
            f" {model.input_shape} of {model.title}: this is another model"
        )
    try:
        batch = np.zeros(model.input_shape, dtype=np.float32)
        out = np.asarray(session.run(None, {inputs[0].name: batch})[0])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelMissing(f"{model.file} does not run on a {model.input_shape} input") from exc
    if out.shape != model.output_shape:
        raise ModelMissing(
            f"{model.file} answers {out.shape}, not the {model.output_shape} embedding of"
            f" {model.title}: this is another model"
        )


def _fits(declared: tuple[Any, ...], expected: tuple[int, ...]) -> bool:
    """Whether a declared ONNX shape is ``expected``, its batch dimension free."""
    if len(declared) != len(expected):
        return False
    batch_free = not isinstance(declared[0], int) or declared[0] in (-1, expected[0])
    return batch_free and all(d == e for d, e in zip(declared[1:], expected[1:], strict=True))


def _shapes(args: list[Any]) -> str:
    return ", ".join(f"{a.name} {a.type} {list(a.shape)}" for a in args) or "no input"
