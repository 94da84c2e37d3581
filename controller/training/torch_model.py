"""Between ONNX and torch: a registered ONNX model becomes a trainable torch module (onnx2torch),
and a trained module goes back to ONNX (opset 17), checked against torch before it is kept.

    module = onnx_to_torch(Path("edge.onnx"))
    export_onnx(module, (1, 28, 28), Path("out/model.onnx"))   # raises if ORT disagrees
"""

from __future__ import annotations

import importlib
import io
import sys
import types
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.training.errors import TrainingUnavailable

if TYPE_CHECKING:
    import torch

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
PARITY_ATOL = 1e-3  # ONNX Runtime's logits vs torch's, on random inputs
_EXTRA_HINT = 'install the train extra: pip install -e ".[train]" (torch==2.13.0 CPU)'


def require(module: str) -> Any:
    """Import a training dependency, or TrainingUnavailable naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TrainingUnavailable(f"training needs {module}: {_EXTRA_HINT}") from exc


def _onnx2torch() -> Any:
    """onnx2torch imports torchvision for its detection ops (NonMaxSuppression, RoiAlign),
    which no classifier has; PyPI's torchvision wheels do not load next to the CPU torch build.
    Without a working torchvision, a placeholder module stands in for those two imports."""
    require("torch")
    try:
        importlib.import_module("torchvision.ops")
    except Exception:  # absent, or a wheel built for another torch (RuntimeError at import)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        for op in ("nms", "batched_nms", "roi_align"):
            setattr(ops, op, _detection_op_unavailable)
        stub.ops = ops  # type: ignore[attr-defined]
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    return require("onnx2torch")


def _detection_op_unavailable(*args: object, **kwargs: object) -> None:
    raise TrainingUnavailable("detection ops need torchvision, which does not load here")


def onnx_to_torch(path: Path) -> torch.nn.Module:
    """The ONNX model as a torch.fx GraphModule with trainable parameters (train mode)."""
    converter = _onnx2torch()
    try:
        module: torch.nn.Module = converter.convert(str(path))
    except Exception as exc:  # an op onnx2torch has no converter for, or a broken file
        raise TrainingUnavailable(
            f"{path.name} cannot be brought into torch ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from exc
    return module.train()


def export_onnx(
    module: torch.nn.Module, input_shape: tuple[int, ...], path: Path, *, check: bool = True
) -> Path:
    """Write ``module`` (input ``[N, *input_shape]`` float32) as ONNX with a dynamic batch axis;
    with ``check``, ONNX Runtime must reproduce torch's logits within PARITY_ATOL."""
    torch = require("torch")
    import onnx
    import onnxruntime as ort

    module = module.eval()
    example = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module, (example,), buffer, opset_version=OPSET, dynamo=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
        )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    if check:
        with torch.no_grad():
            expected = module(example).numpy()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: example.numpy()})[0]
        worst = float(np.abs(got - expected).max())
        if worst > PARITY_ATOL:
            path.unlink()
            raise TrainingUnavailable(
                f"the exported model disagrees with torch by {worst:.2g} (> {PARITY_ATOL})"
            )
    return path
