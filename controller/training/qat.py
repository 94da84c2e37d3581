"""Quantization-aware training of an onnx2torch module, exported as a QDQ ONNX that ONNX Runtime
runs with int8 kernels (QLinearConv, QGemm).

Weights: symmetric signed, ``weight_bits`` levels (8, or 4 for the aggressive setting: a 4-bit
grid stored in int8), per tensor or per output channel, scale = max |w| / (2^(bits-1) - 1)
recomputed every step. Activations: uint8 affine at the input of every Conv / Linear, ranges
observed (min/max) on calibration frames and then fixed. Both fake-quantized with torch's
straight-through estimator while the module fine-tunes against the fp32 model's logits.

    module = onnx_to_torch(path)
    prepare_qat(module, QuantScheme(weight_bits=8, per_channel=False))
    calibrate(module, calibration_x)
    finetune(...)                      # fake-quant in the loop
    export_qdq(module, (1, 28, 28), out / "model.onnx")
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.training.errors import TrainingUnavailable
from controller.training.torch_model import INPUT_NAME, OPSET, OUTPUT_NAME, require

if TYPE_CHECKING:
    import torch

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
PARITY_TOP1 = 0.95  # exported QDQ vs torch fake-quant: top-1 agreement (integer rounding differs)


@dataclass(frozen=True)
class QuantScheme:
    weight_bits: int = 8  # 2..8 (stored as int8 either way)
    per_channel: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.weight_bits <= 8:
            raise TrainingUnavailable(f"weight bits must be 2..8, not {self.weight_bits}")

    @property
    def weight_qmax(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    def describe(self) -> str:
        grain = "per-channel" if self.per_channel else "per-tensor"
        return f"int{self.weight_bits} {grain} symmetric weights, uint8 activations"


def _modules() -> tuple[Any, Any]:
    """The fake-quant module classes, defined once torch is importable."""
    torch = require("torch")
    base: Any = torch.nn.Module

    class ActivationFakeQuant(base):
        """Observes min/max while ``observing``; then fake-quantizes to uint8 with that range."""

        def __init__(self) -> None:
            super().__init__()
            self.observing = True
            self.lo, self.hi = float("inf"), float("-inf")
            self.scale, self.zero_point = 1.0, 0

        def forward(self, x: Any) -> Any:
            if self.observing:
                self.lo = min(self.lo, float(x.detach().min()), 0.0)
                self.hi = max(self.hi, float(x.detach().max()), 0.0)
                return x
            return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)

        def freeze_range(self) -> None:
            if self.hi <= self.lo:  # never saw anything (or only zeros)
                self.lo, self.hi = 0.0, 1.0
            self.scale = max((self.hi - self.lo) / 255.0, 1e-8)
            self.zero_point = int(np.clip(round(-self.lo / self.scale), 0, 255))
            self.observing = False

    class WeightFakeQuant(base):
        """Symmetric signed fake-quant of a weight tensor (scale from its current max |w|)."""

        def __init__(self, scheme: QuantScheme) -> None:
            super().__init__()
            self.scheme = scheme
            self.exporting = False  # the ONNX export's Q/DQ range is (-128, 127)

        def forward(self, w: Any) -> Any:
            qmax = self.scheme.weight_qmax
            lo, hi = (-128, 127) if self.exporting else (-qmax, qmax)
            if self.scheme.per_channel:
                amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
                scale = (amax / qmax).float()
                if self.exporting:  # a constant in the traced graph, so it folds into int8
                    scale = torch.tensor(scale.tolist(), dtype=torch.float32)
                zero = torch.zeros(len(scale), dtype=torch.int32)
                return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, lo, hi)
            scale_value = max(float(w.detach().abs().max()) / qmax, 1e-8)
            return torch.fake_quantize_per_tensor_affine(w, scale_value, 0, lo, hi)

    return ActivationFakeQuant, WeightFakeQuant


def _quantizable(module: Any) -> bool:
    torch = require("torch")
    return isinstance(module, torch.nn.Conv2d | torch.nn.Linear)


def prepare_qat(gm: Any, scheme: QuantScheme) -> int:
    """Fake-quant every Conv2d / Linear weight (a parametrization) and each such layer's input
    activation (a module inserted in the graph of ``gm``, a torch.fx GraphModule as
    onnx_to_torch makes). Returns the number of layers quantized."""
    torch = require("torch")
    parametrize = torch.nn.utils.parametrize
    activation_cls, weight_cls = _modules()
    graph = gm.graph
    layers = [
        n for n in graph.nodes if n.op == "call_module" and _quantizable(gm.get_submodule(n.target))
    ]
    if not layers:
        raise TrainingUnavailable("the model has no Conv or Linear layer to quantize")
    quantized_inputs: dict[Any, Any] = {}
    for i, node in enumerate(layers):
        layer = gm.get_submodule(node.target)
        parametrize.register_parametrization(layer, "weight", weight_cls(scheme))
        producer = node.args[0]
        if producer not in quantized_inputs:
            name = f"qat_activation_{i}"
            gm.add_submodule(name, activation_cls())
            with graph.inserting_after(producer):
                fq = graph.call_module(name, (producer,))
            quantized_inputs[producer] = fq
        node.replace_input_with(producer, quantized_inputs[producer])
    graph.lint()
    gm.recompile()
    return len(layers)


def _activations(gm: torch.nn.Module) -> list[Any]:
    activation_cls, _ = _modules()
    return [m for m in gm.modules() if type(m).__name__ == activation_cls.__name__]


def calibrate(gm: torch.nn.Module, x: np.ndarray, batch: int = 64) -> None:
    """Observe each activation's range on ``x`` (float32 inputs), then fix the ranges."""
    torch = require("torch")
    gm.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            gm(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
    for fq in _activations(gm):
        fq.freeze_range()


def _set_exporting(gm: Any, on: bool) -> None:
    _, weight_cls = _modules()
    for m in gm.modules():
        if type(m).__name__ == weight_cls.__name__:
            m.exporting = on


def _fold_weight_quantization(model: Any) -> int:
    """QuantizeLinear of a constant weight becomes an int8 initializer: the file holds int8
    weights and ONNX Runtime fuses DequantizeLinear -> Conv into an integer kernel."""
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {
        init.name: numpy_helper.to_array(init) for init in model.graph.initializer
    }
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    folded, keep = 0, []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and all(i in consts for i in node.input):
            w, scale, zero = (consts[i] for i in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and w.ndim > 1:
                shape = [1] * w.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            info = np.iinfo(zero.dtype)
            q = np.clip(np.rint(w / scale) + zero.astype(np.int32), info.min, info.max)
            model.graph.initializer.append(
                numpy_helper.from_array(q.astype(zero.dtype), node.output[0])
            )
            folded += 1
            continue
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input}
    survivors = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(survivors)
    model.opset_import[0].version = max(model.opset_import[0].version, OPSET)
    return folded


def export_qdq(
    gm: torch.nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    check_x: np.ndarray | None = None,
) -> dict[str, int]:
    """Write the fake-quantized module as a QDQ ONNX (opset 17, dynamic batch, int8 weight
    initializers), check ONNX Runtime agrees with torch's fake-quant top-1 on ``check_x``
    (real inputs; random ones when None), and return the counts of Q/DQ nodes and folded
    weights."""
    torch = require("torch")
    import onnx
    import onnxruntime as ort

    gm = gm.eval()
    _set_exporting(gm, True)
    if check_x is None:
        example = torch.randn(64, *input_shape, generator=torch.Generator().manual_seed(0))
    else:
        example = torch.from_numpy(np.ascontiguousarray(check_x[:256], dtype=np.float32))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                gm, (example[:2],), buffer, opset_version=OPSET, dynamo=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            )  # fmt: skip
        with torch.no_grad():
            expected = gm(example).numpy()
    finally:
        _set_exporting(gm, False)
    model = onnx.load_from_string(buffer.getvalue())
    folded = _fold_weight_quantization(model)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: example.numpy()})[0]
    agreement = float((got.argmax(1) == expected.argmax(1)).mean())
    if agreement < PARITY_TOP1:
        path.unlink()
        raise TrainingUnavailable(
            f"the QDQ export agrees with torch's fake-quant on {agreement:.0%} of inputs"
        )
    counts = {op: sum(n.op_type == op for n in model.graph.node) for op in QDQ_OPS}
    return {**counts, "int8_weights": folded}


def integer_kernels(path: Path) -> list[str]:
    """The integer op types in ONNX Runtime's optimized graph of ``path`` (QLinearConv...)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        model = onnx.load(opts.optimized_model_filepath)
    return sorted(
        {n.op_type for n in model.graph.node if n.op_type.startswith(("QLinear", "QGemm"))}
        | {n.op_type for n in model.graph.node if "Integer" in n.op_type}
    )
