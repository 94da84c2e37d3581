"""Run a built variant on the controller host: ONNX Runtime, LiteRT or OpenVINO, batch in,
logits out.

Runners take float32 tensors already in the variant's layout; an integer-only LiteRT model's
input is quantized and its output dequantized here, as the agent would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from controller.optimize.errors import VariantUnavailable
from edgefleet.modelmeta import METADATA_FILE, VariantMetadata


class Runner(Protocol):
    def run(self, x: np.ndarray) -> np.ndarray:
        """Float32 input batch -> float32 output batch."""
        ...


def ort_session(path: Path, threads: int, *, optimize: bool = True) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtRunner:
    def __init__(self, path: Path, threads: int = 1) -> None:
        self.session = ort_session(path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] > 0
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.fixed_batch and len(x) != 1:
            return np.concatenate([self.run(x[i : i + 1]) for i in range(len(x))])
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


def litert_interpreter_class() -> Callable[..., Any]:
    """LiteRT's Interpreter, falling back to tflite_runtime only when ai_edge_litert is absent."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    return Interpreter  # type: ignore[no-any-return,unused-ignore]


class LiteRtRunner:
    def __init__(self, path: Path, threads: int = 1) -> None:
        self.interpreter = litert_interpreter_class()(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.inp["dtype"]
        if np.issubdtype(dtype, np.floating):
            return x.astype(dtype)
        scale, zero = self.inp["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if np.issubdtype(y.dtype, np.floating):
            return y.astype(np.float32)
        scale, zero = self.out["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(len(x)):  # LiteRT models are built for batch 1
            self.interpreter.set_tensor(self.inp["index"], self._quantize(x[i : i + 1]))
            self.interpreter.invoke()
            outs.append(self._dequantize(self.interpreter.get_tensor(self.out["index"])))
        return np.concatenate(outs)


def openvino_core() -> Any:
    """OpenVINO's Core; ``VariantUnavailable`` when OpenVINO is not installed here."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise VariantUnavailable(
            "OpenVINO is not installed on the controller (pip install edgefleet[openvino])"
        ) from exc
    return ov.Core()


class OpenVinoRunner:
    """An ONNX model compiled by OpenVINO's CPU plugin as the agent compiles it (batch 1,
    latency hint, threads not pinned, float parts in f32 unless the variant is bf16); a batch
    runs frame by frame."""

    def __init__(self, path: Path, threads: int = 1, precision: str = "fp32") -> None:
        core = openvino_core()
        model = core.read_model(str(path))
        shape = model.inputs[0].get_partial_shape()
        model.reshape({0: [1, *(d.get_length() for d in list(shape)[1:])]})
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": max(1, threads),
            "ENABLE_CPU_PINNING": False,  # as the agent: pinned threads wait for busy cores
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self.request, self.input, self.output = bind_request(self.compiled)

    def run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(len(x)):
            np.copyto(self.input, x[i : i + 1])
            self.request.infer()
            outs.append(self.output.data.astype(np.float32))  # a copy: the buffer is reused
        return np.concatenate(outs)


def bind_request(compiled: Any) -> tuple[Any, np.ndarray, Any]:
    """An infer request of a compiled batch-1 model whose input tensor shares a numpy buffer
    (write a frame there, ``infer()``, read the output tensor): about half the per-call cost
    of passing the frame to ``infer`` (measured: 0.045 vs 0.068 ms on the fashion edge model)."""
    import openvino as ov

    request = compiled.create_infer_request()
    buffer = np.zeros(tuple(compiled.inputs[0].get_shape()), np.float32)
    request.set_input_tensor(ov.Tensor(buffer, shared_memory=True))
    return request, buffer, request.get_output_tensor(0)


def open_runner(path: Path, runtime: str, threads: int = 1, precision: str = "fp32") -> Runner:
    if runtime == "litert":
        return LiteRtRunner(path, threads)
    if runtime == "openvino":
        return OpenVinoRunner(path, threads, precision)
    return OrtRunner(path, threads)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def finalize_variant(out_dir: Path, meta: VariantMetadata) -> VariantMetadata:
    """Fill sha256 and size of ``out_dir/meta.file`` and write ``variant.json`` next to it."""
    from dataclasses import replace

    model_file = out_dir / meta.file
    meta = replace(meta, sha256=sha256_file(model_file), size_bytes=model_file.stat().st_size)
    (out_dir / METADATA_FILE).write_text(meta.to_json(), encoding="utf-8")
    return meta
