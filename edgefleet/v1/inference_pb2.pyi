from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TensorDtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TENSOR_DTYPE_UNSPECIFIED: _ClassVar[TensorDtype]
    TENSOR_DTYPE_UINT8: _ClassVar[TensorDtype]
    TENSOR_DTYPE_INT8: _ClassVar[TensorDtype]
    TENSOR_DTYPE_FLOAT16: _ClassVar[TensorDtype]
    TENSOR_DTYPE_FLOAT32: _ClassVar[TensorDtype]
TENSOR_DTYPE_UNSPECIFIED: TensorDtype
TENSOR_DTYPE_UINT8: TensorDtype
TENSOR_DTYPE_INT8: TensorDtype
TENSOR_DTYPE_FLOAT16: TensorDtype
TENSOR_DTYPE_FLOAT32: TensorDtype

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: TensorDtype
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[TensorDtype, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EncodedImage(_message.Message):
    __slots__ = ("format", "data")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    format: str
    data: bytes
    def __init__(self, format: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class OffloadRequest(_message.Message):
    __slots__ = ("model", "edge_variant_id", "frame_id", "frame", "image", "edge_label", "edge_confidence", "audit", "sequence", "timeout_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EDGE_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EDGE_LABEL_FIELD_NUMBER: _ClassVar[int]
    EDGE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    edge_variant_id: str
    frame_id: str
    frame: Tensor
    image: EncodedImage
    edge_label: int
    edge_confidence: float
    audit: bool
    sequence: int
    timeout_ms: int
    def __init__(self, model: _Optional[str] = ..., edge_variant_id: _Optional[str] = ..., frame_id: _Optional[str] = ..., frame: _Optional[_Union[Tensor, _Mapping]] = ..., image: _Optional[_Union[EncodedImage, _Mapping]] = ..., edge_label: _Optional[int] = ..., edge_confidence: _Optional[float] = ..., audit: _Optional[bool] = ..., sequence: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class OffloadResponse(_message.Message):
    __slots__ = ("label", "label_name", "confidence", "probabilities", "model_id", "queue_ms", "infer_ms", "sequence", "status_code", "status_message")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFER_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    label: int
    label_name: str
    confidence: float
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    model_id: str
    queue_ms: float
    infer_ms: float
    sequence: int
    status_code: int
    status_message: str
    def __init__(self, label: _Optional[int] = ..., label_name: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Iterable[float]] = ..., model_id: _Optional[str] = ..., queue_ms: _Optional[float] = ..., infer_ms: _Optional[float] = ..., sequence: _Optional[int] = ..., status_code: _Optional[int] = ..., status_message: _Optional[str] = ...) -> None: ...
