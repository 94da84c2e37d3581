"""The model at a reduced input size: a convolutional network that ends in global pooling takes
any input size, so the same weights run at 0.75x or 0.5x the pixels for roughly that fraction
of the compute; a brief distillation from the full-size model (which sees the full-size frame
while the student sees the reduced one) recovers most of what the smaller image loses.

    pre = reduced_preprocessing(source_pre, 75)              # size (21, 21) from (28, 28)
    check_size_free(onnx_path, module, (1, *pre.size), classes)
    finetune(module, frames.inputs(pre), teacher_logits, ...)
    export_onnx(module, (1, *pre.size), out / "model.onnx")
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from controller.training.errors import TrainingUnavailable
from controller.training.torch_model import require
from edgefleet.modelmeta import Preprocessing

if TYPE_CHECKING:
    import torch

MIN_SIDE = 8  # smaller than this is no image for a CNN
POOLING_OPS = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax")


def reduced_preprocessing(pre: Preprocessing, percent: int) -> Preprocessing:
    """``pre`` with its size scaled to ``percent`` (rounded, at least MIN_SIDE per side)."""
    if not 0 < percent < 100:
        raise TrainingUnavailable(f"resolution percent must be within 1..99, not {percent}")
    height, width = pre.size
    size = (
        max(MIN_SIDE, round(height * percent / 100)),
        max(MIN_SIDE, round(width * percent / 100)),
    )
    if size == tuple(pre.size):
        raise TrainingUnavailable(f"{percent}% of {height}x{width} is the same size")
    return replace(pre, size=size)


def check_size_free(
    onnx_path: Path, module: torch.nn.Module, input_shape: tuple[int, ...], classes: int
) -> None:
    """TrainingUnavailable unless the network pools globally and answers ``[N, classes]`` at
    ``input_shape`` (one frame, without the batch axis)."""
    import onnx

    torch = require("torch")
    ops = {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    if not ops & set(POOLING_OPS):
        raise TrainingUnavailable(
            "the model does not end in global pooling: it cannot take a smaller input"
        )
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *input_shape))
    except Exception as exc:  # a fixed Reshape or Linear on the spatial dimensions
        raise TrainingUnavailable(
            f"the model does not run at {list(input_shape[1:])} ({type(exc).__name__})"
        ) from exc
    if tuple(out.shape) != (1, classes):
        raise TrainingUnavailable(
            f"at {list(input_shape[1:])} the model answers {list(out.shape)}, not [1, {classes}]"
        )
