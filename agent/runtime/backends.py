"""Inference backends: ONNX Runtime, LiteRT (ai-edge-litert, falling back to tflite_runtime)
and OpenVINO (an ONNX file compiled for the CPU plugin)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.runtime.errors import RuntimeFailure

log = logging.getLogger(__name__)

# Most to least preferred; the first available and allowed providers are used, in this order.
PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


class Backend(Protocol):
    """Runs one input tensor through a model and returns its first output."""

    name: str

    def run(self, tensor: np.ndarray) -> np.ndarray: ...


def choose_providers(available: Sequence[str], allowed: Sequence[str] | None = None) -> list[str]:
    """Available providers in preference order, restricted to `allowed` (None: all known)."""
    allowed_set = set(PROVIDER_PREFERENCE if allowed is None else allowed)
    chosen = [p for p in PROVIDER_PREFERENCE if p in available and p in allowed_set]
    if not chosen:
        raise RuntimeFailure(f"no allowed execution provider among available {list(available)}")
    return chosen


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        input_name: str,
        output_name: str,
        threads: int | None = None,
        allowed_providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.providers = choose_providers(ort.get_available_providers(), allowed_providers)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: graph-optimizer advice is not for operators
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=self.providers
            )
        except Exception as exc:  # ORT raises its own untyped errors
            raise RuntimeFailure(f"cannot load ONNX model {path}: {exc}") from exc
        self.input_name = input_name
        self.output_name = output_name
        names = {i.name for i in self.session.get_inputs()}
        if input_name not in names:
            raise RuntimeFailure(f"model {path} has no input {input_name!r} (has {sorted(names)})")
        log.info("loaded %s with providers %s", path, self.providers)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self.output_name], {self.input_name: tensor})
        except Exception as exc:
            raise RuntimeFailure(f"onnxruntime run failed: {exc}") from exc
        return np.asarray(out[0])

    def bound_single(self) -> BoundRun | None:
        """A batch-1 float32 run on buffers bound once (None: the model's shapes or types
        do not allow it): no allocation and less Python per call than ``run``."""
        inputs = [i for i in self.session.get_inputs() if i.name == self.input_name]
        outputs = [o for o in self.session.get_outputs() if o.name == self.output_name]
        if not inputs or not outputs:
            return None
        if inputs[0].type != "tensor(float)" or outputs[0].type != "tensor(float)":
            return None
        in_shape, out_shape = _batch_one(inputs[0].shape), _batch_one(outputs[0].shape)
        if in_shape is None or out_shape is None:
            return None
        return BoundRun(self.session, self.input_name, self.output_name, in_shape, out_shape)


def _batch_one(shape: Sequence[object]) -> tuple[int, ...] | None:
    """A model's shape with its batch dimension 1; None when another one is not fixed."""
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape[1:]):
        return None
    return (1, *(int(d) for d in shape[1:]))  # type: ignore[call-overload]


class BoundRun:
    """``input`` (write the tensor there) -> ``run()`` -> ``output``, through an ONNX Runtime
    IO binding of both buffers. One caller at a time: ``lock`` (the caller takes it)."""

    def __init__(
        self,
        session: Any,
        input_name: str,
        output_name: str,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
    ) -> None:
        import threading

        self.input = np.zeros(in_shape, np.float32)
        self.output = np.zeros(out_shape, np.float32)
        self.lock = threading.Lock()
        self._session = session
        self._binding = session.io_binding()
        self._binding.bind_cpu_input(input_name, self.input)
        self._binding.bind_output(
            output_name, "cpu", 0, np.float32, list(out_shape), self.output.ctypes.data
        )

    def run(self) -> None:
        try:
            self._session.run_with_iobinding(self._binding)
        except Exception as exc:
            raise RuntimeFailure(f"onnxruntime run failed: {exc}") from exc


def _litert_interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError as exc:
        raise RuntimeFailure(
            "LiteRT is not installed: install ai-edge-litert (or tflite-runtime)"
        ) from exc


class LiteRtBackend:
    """A TFLite model. Input quantization happens in the Preprocessor; outputs are returned raw
    (the caller dequantizes with the variant's output_quantization)."""

    name = "litert"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        interpreter_class = _litert_interpreter_class()
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=threads or None)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise RuntimeFailure(f"cannot load LiteRT model {path}: {exc}") from exc
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch_shape = tuple(int(d) for d in self._input["shape"])

    def run(self, tensor: np.ndarray) -> np.ndarray:
        if tuple(tensor.shape) != self._batch_shape:
            self.interpreter.resize_tensor_input(self._input["index"], list(tensor.shape))
            self.interpreter.allocate_tensors()
            self._batch_shape = tuple(tensor.shape)
        try:
            self.interpreter.set_tensor(self._input["index"], tensor)
            self.interpreter.invoke()
            return np.array(self.interpreter.get_tensor(self._output["index"]))
        except Exception as exc:
            raise RuntimeFailure(f"LiteRT invoke failed: {exc}") from exc


# A variant's precision -> OpenVINO's inference precision for its float parts.
OPENVINO_PRECISION_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}


class OpenVinoBackend:
    """An ONNX model compiled once by OpenVINO's CPU plugin for batch 1, with the latency hint
    and ``threads`` inference threads (None: OpenVINO's choice), not pinned to cores. Float
    parts run in f32 unless the variant's precision is bf16 (OpenVINO would pick bf16 itself
    on CPUs that have it; on those that do not, a bf16 variant runs in f32); a QDQ model's int8
    parts run in int8. A batch of
    more than one frame runs frame by frame; one caller at a time (the infer request is reused)."""

    name = "openvino"

    def __init__(
        self,
        path: Path,
        input_name: str,
        output_name: str,
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise RuntimeFailure(
                "OpenVINO is not installed: install edgefleet[openvino] (openvino)"
            ) from exc
        self.inference_precision = OPENVINO_PRECISION_HINTS.get(precision, "f32")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.inference_precision,
            # Threads free to move: pinned ones wait for a busy core. The teacher at 2 threads
            # on a loaded 2-core host: 5-10 ms pinned, 1.3-1.6 unpinned (ONNX Runtime 1.4).
            "ENABLE_CPU_PINNING": False,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            core = ov.Core()
            model = core.read_model(str(path))
            names = {name for port in model.inputs for name in port.get_names()}
            if input_name not in names:
                raise RuntimeFailure(
                    f"model {path} has no input {input_name!r} (has {sorted(names)})"
                )
            outputs = {name for port in model.outputs for name in port.get_names()}
            if output_name not in outputs:
                raise RuntimeFailure(
                    f"model {path} has no output {output_name!r} (has {sorted(outputs)})"
                )
            shape = model.input(input_name).get_partial_shape()
            dims = [1, *(d.get_length() if d.is_static else -1 for d in list(shape)[1:])]
            if len(dims) < 2 or any(d < 1 for d in dims):
                raise RuntimeFailure(f"model {path}: input shape {shape} is not fixed past batch")
            model.reshape({input_name: dims})
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeFailure:
            raise
        except Exception as exc:  # OpenVINO raises its own untyped RuntimeErrors
            raise RuntimeFailure(f"cannot load model {path} with OpenVINO: {exc}") from exc
        self.input_shape = tuple(dims)
        # The input tensor shares this buffer: a frame is copied in, then a bare infer() (half
        # the per-call cost of handing the frame to infer: 0.045 vs 0.068 ms, fashion edge).
        self._input = np.zeros(self.input_shape, np.float32)
        self._request = self.compiled.create_infer_request()
        self._request.set_tensor(
            self.compiled.input(input_name), ov.Tensor(self._input, shared_memory=True)
        )
        self._output = self._request.get_tensor(self.compiled.output(output_name))
        self._lock = threading.Lock()
        log.info("loaded %s with OpenVINO CPU, %s threads", path, threads or "default")

    def run(self, tensor: np.ndarray) -> np.ndarray:
        if tensor.ndim != len(self.input_shape) or tensor.shape[1:] != self.input_shape[1:]:
            raise RuntimeFailure(
                f"input of shape {tensor.shape} does not fit the model's {self.input_shape}"
            )
        if tensor.dtype != np.float32:
            raise RuntimeFailure(f"input of dtype {tensor.dtype}, the model takes float32")
        rows = [self._run_one(tensor[i : i + 1]) for i in range(len(tensor))]
        if not rows:
            raise RuntimeFailure("an empty batch has no frame to run")
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def _run_one(self, frame: np.ndarray) -> np.ndarray:
        with self._lock:
            np.copyto(self._input, frame)
            try:
                self._request.infer()
            except Exception as exc:
                raise RuntimeFailure(f"OpenVINO inference failed: {exc}") from exc
            return np.array(self._output.data)  # a copy: the output buffer is reused
