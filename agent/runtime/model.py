"""A loaded model variant: metadata + backend + preprocessor, read from a variant directory."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.runtime.backends import (
    Backend,
    BoundRun,
    LiteRtBackend,
    OnnxRuntimeBackend,
    OpenVinoBackend,
)
from agent.runtime.errors import RuntimeFailure
from agent.runtime.preprocess import Preprocessor, dequantize
from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import METADATA_FILE, VariantMetadata


@dataclass
class LoadedModel:
    metadata: VariantMetadata
    backend: Backend
    preprocessor: Preprocessor
    directory: Path | None = None
    # batch-1 float32 ONNX Runtime runs on buffers bound once (None: every frame via `run`)
    bound: BoundRun | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        backend = self.backend
        if isinstance(backend, OnnxRuntimeBackend) and self.bound is None:
            self.bound = (
                backend.bound_single() if self.metadata.output_quantization is None else None
            )

    @property
    def variant_id(self) -> str:
        return self.metadata.variant_id

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run an input tensor; returns float32 outputs (dequantized for integer models)."""
        out = self.backend.run(tensor)
        q = self.metadata.output_quantization
        if q is not None and not np.issubdtype(out.dtype, np.floating):
            return dequantize(out, q)
        return out.astype(np.float32, copy=False)

    def infer_frame(self, frame: np.ndarray) -> np.ndarray:
        """Preprocess one frame and return its output row (e.g. 10 logits)."""
        bound = self.bound
        if bound is not None and bound.lock.acquire(blocking=False):
            try:  # the frame preprocessed into the bound input, the answer out of its output
                if self.preprocessor.into(frame, bound.input):
                    bound.run()
                    return bound.output[0].copy()
            finally:
                bound.lock.release()
        return self.run(self.preprocessor(frame))[0]


def load_variant(
    directory: str | Path,
    threads: int | None = None,
    allowed_providers: Sequence[str] | None = None,
) -> LoadedModel:
    """Load a variant directory (model file + variant.json) with the backend it names.

    `threads` is the hardware profile's thread count; `allowed_providers` restricts ONNX
    Runtime execution providers (None: any of TensorRT, CUDA, OpenVINO, CPU).
    """
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    try:
        metadata = VariantMetadata.from_json(meta_path.read_text())
    except OSError as exc:
        raise RuntimeFailure(f"cannot read {meta_path}: {exc}") from exc
    except InvalidInput as exc:
        raise RuntimeFailure(f"{meta_path}: {exc}") from exc
    model_path = directory / metadata.file
    if not model_path.is_file():
        raise RuntimeFailure(f"model file {model_path} named by {meta_path} does not exist")
    backend: Backend
    if metadata.runtime == "onnxruntime":
        backend = OnnxRuntimeBackend(
            model_path, metadata.input_name, metadata.output_name, threads, allowed_providers
        )
    elif metadata.runtime == "litert":
        backend = LiteRtBackend(model_path, threads)
    elif metadata.runtime == "openvino":
        backend = OpenVinoBackend(
            model_path, metadata.input_name, metadata.output_name, threads, metadata.precision
        )
    else:
        raise RuntimeFailure(f"unknown runtime {metadata.runtime!r} in {meta_path}")
    preprocessor = Preprocessor(
        metadata.preprocessing, metadata.input_dtype, metadata.input_quantization
    )
    return LoadedModel(metadata, backend, preprocessor, directory)


class ModelHolder:
    """Holds the active model; `swap` replaces it atomically.

    Load the new model fully first, then swap: a frame takes the reference once with
    `current()` and finishes on that model, so no frame is dropped during a swap.
    """

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self._lock = threading.Lock()

    def current(self) -> LoadedModel:
        with self._lock:
            return self._model

    def swap(self, model: LoadedModel) -> LoadedModel:
        """Make `model` active; returns the previous one."""
        with self._lock:
            previous, self._model = self._model, model
        return previous
