"""Student architectures for distillation: MobileNet-style depthwise-separable CNNs at a few
widths and input resolutions, built for any frame size, channel count and number of classes.

    arch = architecture("mobilenet-w1.0")          # UnknownArchitecture lists the known ones
    module = arch.build(channels=1, num_classes=10)
    arch.input_size((28, 28))                      # (28, 28); "-r50" entries halve it

``mobilenet-w1.0`` is exactly the edge model of examples/fashion (make_fashion.py's
``student_model``: 32,378 parameters for 1 x 28 x 28 frames and 10 classes), the baseline a
distilled student has to beat at equal latency. Widths scale every layer's channels;
resolutions are a fraction of the frame's side, applied by the model's preprocessing resize
(so the agent feeds the smaller input, and the ONNX model is smaller to run).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.training.errors import UnknownArchitecture
from controller.training.torch_model import require

if TYPE_CHECKING:
    import torch

BASELINE = "mobilenet-w1.0"
# (output channels, stride) of the stem and the depthwise-separable blocks at width 1.0
_STEM = (24, 2)
_BLOCKS = ((32, 1), (64, 2), (128, 1), (128, 2))
_WIDTHS = (0.5, 1.0, 1.5)
_RESOLUTIONS = (100, 75, 50)  # percent of the frame's side
MIN_INPUT_SIDE = 8


@dataclass(frozen=True)
class Architecture:
    name: str
    width: float
    resolution_pct: int
    summary: str

    def channels(self) -> tuple[int, ...]:
        """Stem then block output channels at this width."""
        return tuple(max(8, round(c * self.width)) for c in (_STEM[0], *(c for c, _ in _BLOCKS)))

    def input_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """The model's input (height, width) for frames of ``frame_size``."""
        return (
            max(MIN_INPUT_SIDE, round(frame_size[0] * self.resolution_pct / 100)),
            max(MIN_INPUT_SIDE, round(frame_size[1] * self.resolution_pct / 100)),
        )

    def build(self, channels: int, num_classes: int, seed: int = 0) -> torch.nn.Module:
        """A freshly initialised module (seeded) taking ``[N, channels, H, W]`` inputs."""
        torch = require("torch")
        nn = torch.nn
        if channels < 1 or num_classes < 2:
            raise UnknownArchitecture(
                f"{self.name} needs >= 1 input channel and >= 2 classes, "
                f"not {channels} and {num_classes}"
            )
        torch.manual_seed(seed)

        def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> Any:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU6(inplace=True),
            )

        widths = self.channels()
        layers: list[Any] = [conv_bn(channels, widths[0], 3, stride=_STEM[1])]
        for c_in, c_out, (_, stride) in zip(widths[:-1], widths[1:], _BLOCKS, strict=True):
            layers.append(
                nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in), conv_bn(c_in, c_out, 1))
            )
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(widths[-1], num_classes),
        ]
        return nn.Sequential(*layers)

    def parameters(self, channels: int = 1, num_classes: int = 10) -> int:
        """Trainable parameters, computed without torch (the catalogue listing needs none)."""
        widths = self.channels()
        total = channels * widths[0] * 9 + 2 * widths[0]  # stem conv + batch norm
        for c_in, c_out in itertools.pairwise(widths):
            total += c_in * 9 + 2 * c_in + c_in * c_out + 2 * c_out
        return total + widths[-1] * num_classes + num_classes


def _name(width: float, pct: int) -> str:
    return f"mobilenet-w{width:.1f}" + ("" if pct == 100 else f"-r{pct}")


def _entries() -> dict[str, Architecture]:
    out = {}
    for width in _WIDTHS:
        for pct in _RESOLUTIONS:
            name = _name(width, pct)
            res = "full-size input" if pct == 100 else f"input {pct}% of the frame's side"
            summary = f"4 depthwise-separable blocks, width {width}x, {res}"
            if name == BASELINE:
                summary += " (= examples/fashion edge model)"
            out[name] = Architecture(name, width, pct, summary)
    return out


CATALOGUE: dict[str, Architecture] = _entries()


def architecture(name: str) -> Architecture:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownArchitecture(
            f"unknown student architecture {name!r} (known: {', '.join(CATALOGUE)})"
        ) from None


def catalogue_rows(
    frame_size: tuple[int, int] = (28, 28), channels: int = 1, num_classes: int = 10
) -> list[dict[str, object]]:
    """The listing of ``edgefleet model students``."""
    return [
        {
            "name": a.name,
            "width": a.width,
            "resolution_pct": a.resolution_pct,
            "input_size": list(a.input_size(frame_size)),
            "parameters": a.parameters(channels, num_classes),
            "baseline": a.name == BASELINE,
            "summary": a.summary,
        }
        for a in CATALOGUE.values()
    ]
