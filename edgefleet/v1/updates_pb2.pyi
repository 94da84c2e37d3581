from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetMetadataRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetMetadataResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("sha256", "target_path", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    target_path: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., target_path: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("data", "offset", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetArtifactUrlRequest(_message.Message):
    __slots__ = ("sha256", "target_path")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    target_path: str
    def __init__(self, sha256: _Optional[str] = ..., target_path: _Optional[str] = ...) -> None: ...

class GetArtifactUrlResponse(_message.Message):
    __slots__ = ("url", "expires_unix_ms", "size", "sha256")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    url: str
    expires_unix_ms: int
    size: int
    sha256: str
    def __init__(self, url: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListBenchCandidatesRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class BenchCandidate(_message.Message):
    __slots__ = ("variant_id", "model", "version", "variant", "runtime", "precision", "target_path", "sha256", "size")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    model: str
    version: int
    variant: str
    runtime: str
    precision: str
    target_path: str
    sha256: str
    size: int
    def __init__(self, variant_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., variant: _Optional[str] = ..., runtime: _Optional[str] = ..., precision: _Optional[str] = ..., target_path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ListBenchCandidatesResponse(_message.Message):
    __slots__ = ("profile", "threads", "candidates")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    profile: str
    threads: int
    candidates: _containers.RepeatedCompositeFieldContainer[BenchCandidate]
    def __init__(self, profile: _Optional[str] = ..., threads: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[BenchCandidate, _Mapping]]] = ...) -> None: ...

class BenchResult(_message.Message):
    __slots__ = ("variant_id", "latency_median_ms", "latency_p95_ms", "ok", "error")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    latency_median_ms: float
    latency_p95_ms: float
    ok: bool
    error: str
    def __init__(self, variant_id: _Optional[str] = ..., latency_median_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ReportBenchmarksRequest(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BenchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BenchResult, _Mapping]]] = ...) -> None: ...

class ReportBenchmarksResponse(_message.Message):
    __slots__ = ("accepted", "reselected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RESELECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    reselected: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., reselected: _Optional[_Iterable[str]] = ...) -> None: ...
