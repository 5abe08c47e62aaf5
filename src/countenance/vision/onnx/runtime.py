"""How ONNX models run: execution providers and threads, chosen at the edge.

What a model computes (its pre- and post-processing) is kept apart from how it runs, so the
same detector or embedder runs on a CPU or on a GPU unchanged.

Example::

    runtime = Runtime.choose(threads=2)      # CUDA when onnxruntime-gpu sees a GPU, else CPU
    session = runtime.session(Path("fr_feature.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: batch})[0]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countenance.errors import BackendError, BackendUnavailable

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True, slots=True)
class Runtime:
    """Execution providers (best first) and CPU threads per session (0: ONNX Runtime's own
    choice, one per core)."""

    providers: tuple[str, ...] = (CPU,)
    threads: int = 0

    @classmethod
    def choose(cls, device: str = "auto", threads: int = 0) -> Runtime:
        """``auto``: CUDA where this onnxruntime build offers it, CPU otherwise; ``cpu`` or
        ``cuda`` to insist (``cuda`` without a GPU build raises BackendUnavailable)."""
        available = set(_ort().get_available_providers())
        if device == "cpu":
            return cls((CPU,), threads)
        if device == "cuda":
            if CUDA not in available:
                raise BackendUnavailable(
                    "the CUDA execution provider is missing: pip install 'countenance[gpu]'"
                )
            return cls((CUDA, CPU), threads)
        if device != "auto":
            raise BackendError(f"unknown device {device!r}: use auto, cpu or cuda")
        return cls((CUDA, CPU) if CUDA in available else (CPU,), threads)

    @property
    def device(self) -> str:
        return "cuda" if self.providers[0] == CUDA else "cpu"

    def session(self, path: Path) -> Any:
        """An ``onnxruntime.InferenceSession`` over the model file at ``path``."""
        ort = _ort()
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no provider chatter on stderr
        ort.set_default_logger_severity(3)
        try:
            return ort.InferenceSession(str(path), options, providers=list(self.providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BackendError(f"cannot load ONNX model {path}: {exc}") from exc


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable("ONNX Runtime is missing: pip install onnxruntime") from exc
    return onnxruntime
