"""Metadata that travels with every model variant, from the build pipeline to the agent.

The agent derives preprocessing and confidence calibration from this, never from code: a
variant directory holds the model file plus ``variant.json`` (``VariantMetadata.to_json``).
The same fields ride in the TUF target's custom metadata.

Parsing (``from_dict``/``from_json``) validates every field's type with pydantic over these
plain dataclasses (``_parse``), so a wrong type is refused with its path
("preprocessing.size: Input should be a valid tuple") instead of slipping through to the
runtime; building them in code stays plain dataclass construction.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from edgefleet.errors import InvalidInput

METADATA_FILE = "variant.json"
LAYOUTS = frozenset({"NCHW", "NHWC"})
_FORBID_UNKNOWN = ConfigDict(extra="forbid")  # pydantic's config for the dataclasses below
T = TypeVar("T")


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}  # built on first parse: imports stay quick


def _parse(cls: type[T], data: Any, what: str) -> T:
    """``cls`` from JSON-shaped ``data`` (lists for tuples), every field type-checked;
    InvalidInput naming each field that does not fit."""
    try:
        adapter = _ADAPTERS.get(cls) or _ADAPTERS.setdefault(cls, TypeAdapter(cls))
        parsed: T = adapter.validate_python(data)
        return parsed
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"malformed {what}: {problems}") from None


@dataclass(frozen=True)
class Preprocessing:
    """How a raw frame becomes the model's input tensor.

    A frame (H x W [x C], uint8 or float) is resized to ``size`` (height, width), scaled by
    ``scale`` (1/255 for uint8 images), normalized per channel ``(x - mean) / std``, laid out
    as ``layout`` and given a batch axis.
    """

    size: tuple[int, int]
    channels: int = 3
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    __pydantic_config__: ClassVar[ConfigDict] = _FORBID_UNKNOWN

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InvalidInput(f"layout must be one of {sorted(LAYOUTS)}, not {self.layout!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """From JSON-shaped fields (lists for tuples); InvalidInput when they do not fit."""
        return _parse(cls, data, "preprocessing")

    @classmethod
    def from_file(cls, path: Path) -> Preprocessing:
        """A ``preprocess.json`` holding these fields."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path}: not a valid preprocessing file ({exc})") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"{path}: not a valid preprocessing file (no JSON object)")
        try:
            return cls.from_dict(data)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: not a valid preprocessing file ({exc})") from exc


@dataclass(frozen=True)
class InputQuantization:
    """Affine quantization of an integer-only model's input: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str = "int8"
    __pydantic_config__: ClassVar[ConfigDict] = _FORBID_UNKNOWN


@dataclass(frozen=True)
class VariantMetadata:
    model: str  # model name, e.g. "digits-edge"
    version: int  # model version
    variant: str  # variant kind, e.g. "onnx-int8-static"
    variant_id: str  # "{model}:{version}:{variant}"
    runtime: str  # onnxruntime | litert | openvino
    precision: str  # fp32 | fp16 | bf16 | int8 | mixed
    file: str  # model file name inside the variant directory
    input_name: str
    input_shape: tuple[int, ...]  # with -1 for the dynamic batch axis
    input_dtype: str  # float32 | int8 | uint8
    output_name: str
    preprocessing: Preprocessing
    labels: tuple[str, ...] = ()
    temperature: float = 1.0  # softmax temperature fitted on validation data
    input_quantization: InputQuantization | None = None
    output_quantization: InputQuantization | None = None
    outputs_are_logits: bool = True  # False when the model ends in a softmax
    sha256: str = ""
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    __pydantic_config__: ClassVar[ConfigDict] = _FORBID_UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantMetadata:
        return _parse(cls, data, "variant metadata")

    @classmethod
    def from_json(cls, text: str) -> VariantMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"variant metadata is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("variant metadata must be a JSON object")
        return cls.from_dict(data)
