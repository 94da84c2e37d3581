"""The source of a build: one ONNX model, how frames become its input, and its data.

``inspect_onnx`` reads the model's signature (one image input, one class-score output);
``SourceModel`` bundles it with validation and calibration frames and checks they fit;
``preprocess`` is the one frame -> tensor transform every variant is measured with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from controller.optimize.errors import DataMismatch, NotAnOnnxModel, UnsupportedModel
from edgefleet.errors import InvalidInput
from edgefleet.frames import frames_tensor
from edgefleet.modelmeta import Preprocessing

log = logging.getLogger(__name__)

_DTYPES = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
}


@dataclass(frozen=True)
class ModelSignature:
    """What a model takes and gives: ``input_shape`` holds -1 for dynamic axes."""

    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    layout: str
    output_name: str
    output_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return self.output_shape[-1]

    @property
    def dynamic_batch(self) -> bool:
        return self.input_shape[0] == -1


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim)


def _guess_layout(shape: tuple[int, ...]) -> str:
    if len(shape) != 4:
        raise UnsupportedModel(f"image input must be 4-D, the model's is {list(shape)}")
    if shape[1] in (1, 3, 4):
        return "NCHW"
    if shape[3] in (1, 3, 4):
        return "NHWC"
    return "NCHW"


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX model, raising ``NotAnOnnxModel`` for anything that is not one."""
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise NotAnOnnxModel(f"{path}: no such file") from None
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for garbage
        raise NotAnOnnxModel(f"{path} is not an ONNX model ({type(exc).__name__})") from exc
    if not model.graph.node or not model.graph.output:
        raise NotAnOnnxModel(f"{path} is not an ONNX model (no graph)")
    return model


def inspect_onnx(path: Path) -> ModelSignature:
    """Read input name/shape/dtype/layout and output name/shape of a one-input model."""
    model = load_onnx(path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedModel(f"{path}: expected one input, found {len(inputs)}")
    (inp,) = inputs
    out = model.graph.output[0]
    elem = inp.type.tensor_type.elem_type
    if elem not in _DTYPES:
        raise UnsupportedModel(f"{path}: unsupported input type {TensorProto.DataType.Name(elem)}")
    shape = _dims(inp)
    out_shape = _dims(out)
    if len(out_shape) != 2 or out_shape[-1] < 2:
        raise UnsupportedModel(f"{path}: output must be [N, classes], it is {list(out_shape)}")
    return ModelSignature(
        input_name=inp.name,
        input_shape=shape,
        input_dtype=_DTYPES[elem],
        layout=_guess_layout(shape),
        output_name=out.name,
        output_shape=out_shape,
    )


def preprocess(frames: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Frames (N x H x W [x C], uint8 or float) -> float32 model input laid out as ``pre.layout``,
    with the same arithmetic as the agent and the cloud model (``edgefleet.frames``)."""
    x = np.asarray(frames)
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (3, 4) and pre.channels != 1):
        x = x[None]  # a single frame
    if x.ndim not in (3, 4):
        raise DataMismatch(f"frames must be N x H x W [x C], got shape {list(x.shape)}")
    try:
        return frames_tensor(x, pre)
    except InvalidInput as exc:
        raise DataMismatch(str(exc)) from exc


@dataclass
class SourceModel:
    """A source model and the data it is built, calibrated and validated with.

    Construct with ``SourceModel.create`` (or ``from_files``): it inspects the ONNX file and
    raises ``DataMismatch`` when the data does not fit the model.
    """

    onnx_path: Path
    name: str
    version: int
    preprocessing: Preprocessing
    validation_x: np.ndarray
    validation_y: np.ndarray
    calibration_x: np.ndarray
    labels: tuple[str, ...] = ()
    signature: ModelSignature = field(init=False)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.onnx_path = Path(self.onnx_path)
        self.signature = inspect_onnx(self.onnx_path)
        self._check()

    @classmethod
    def create(
        cls,
        onnx_path: Path,
        name: str,
        version: int,
        preprocessing: Preprocessing,
        validation_x: np.ndarray,
        validation_y: np.ndarray,
        calibration_x: np.ndarray | None = None,
        labels: tuple[str, ...] = (),
    ) -> SourceModel:
        """Calibration defaults to the validation frames when none are given."""
        return cls(
            onnx_path=Path(onnx_path),
            name=name,
            version=version,
            preprocessing=preprocessing,
            validation_x=np.asarray(validation_x),
            validation_y=np.asarray(validation_y),
            calibration_x=np.asarray(validation_x if calibration_x is None else calibration_x),
            labels=tuple(labels),
        )

    @classmethod
    def from_files(
        cls,
        onnx_path: Path,
        name: str,
        version: int,
        preprocessing: Preprocessing,
        validation_npz: Path,
        calibration_npz: Path | None = None,
        labels: tuple[str, ...] = (),
    ) -> SourceModel:
        """Load ``x`` (frames) and ``y`` (labels) arrays from ``.npz`` files."""
        val = _load_npz(validation_npz, ("x", "y"))
        cal = _load_npz(calibration_npz, ("x",)) if calibration_npz else None
        return cls.create(
            onnx_path,
            name,
            version,
            preprocessing,
            val["x"],
            val["y"],
            cal["x"] if cal is not None else None,
            labels,
        )

    def _check(self) -> None:
        sig, pre = self.signature, self.preprocessing
        if sig.input_dtype != "float32":
            raise DataMismatch(f"model input is {sig.input_dtype}; the source must take float32")
        x, y = self.validation_x, self.validation_y
        if len(x) == 0 or len(self.calibration_x) == 0:
            raise DataMismatch("validation and calibration data must not be empty")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataMismatch(
                f"validation labels must be a 1-D integer array, got {y.dtype} {list(y.shape)}"
            )
        if len(y) != len(x):
            raise DataMismatch(f"{len(x)} validation frames but {len(y)} labels")
        for what, frames in (("validation", x), ("calibration", self.calibration_x)):
            if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
                raise DataMismatch(f"{what} frames must be uint8 or float, not {frames.dtype}")
            tensor = preprocess(frames[:1], pre)
            want = tuple(d for d in sig.input_shape[1:])
            got = tuple(tensor.shape[1:])
            if any(w not in (-1, g) for w, g in zip(want, got, strict=False)) or len(want) != len(
                got
            ):
                raise DataMismatch(
                    f"{what} frames {list(frames.shape[1:])} preprocess to {list(got)}, "
                    f"model input {sig.input_name!r} wants {list(want)}"
                )
        if int(y.min()) < 0 or int(y.max()) >= sig.num_classes:
            raise DataMismatch(
                f"validation labels span {int(y.min())}..{int(y.max())}, "
                f"model has {sig.num_classes} classes"
            )
        if self.labels and len(self.labels) != sig.num_classes:
            raise DataMismatch(
                f"{len(self.labels)} label names for a model with {sig.num_classes} classes"
            )

    def validation_inputs(self) -> np.ndarray:
        """Preprocessed validation tensor (cached)."""
        if "val" not in self._cache:
            self._cache["val"] = preprocess(self.validation_x, self.preprocessing)
        return self._cache["val"]

    def calibration_inputs(self, limit: int | None = None) -> np.ndarray:
        """Preprocessed calibration tensor (cached), the first ``limit`` frames."""
        if "cal" not in self._cache:
            self._cache["cal"] = preprocess(self.calibration_x, self.preprocessing)
        cal = self._cache["cal"]
        return cal if limit is None else cal[:limit]


def load_preprocessing(path: Path) -> Preprocessing:
    """Read a ``preprocess.json`` holding ``Preprocessing`` fields."""
    try:
        return Preprocessing.from_file(path)
    except InvalidInput as exc:
        raise DataMismatch(str(exc)) from exc


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DataMismatch(f"{path}: missing arrays {missing} (has {data.files})")
            return {k: data[k] for k in keys}
    except (OSError, ValueError) as exc:
        raise DataMismatch(f"{path}: not a readable .npz file ({exc})") from exc
