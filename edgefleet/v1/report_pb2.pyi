from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Histogram(_message.Message):
    __slots__ = ("bounds", "counts", "sum", "count")
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    bounds: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    sum: float
    count: int
    def __init__(self, bounds: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., sum: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class Agreement(_message.Message):
    __slots__ = ("pairs", "agreed")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    pairs: int
    agreed: int
    def __init__(self, pairs: _Optional[int] = ..., agreed: _Optional[int] = ...) -> None: ...

class TelemetryReport(_message.Message):
    __slots__ = ("device_id", "interval_start_unix_ms", "interval_end_unix_ms", "model", "variant_id", "frames", "offloaded", "offload_failures", "skipped_frames", "dropped_bad_frames", "local_latency_ms", "end_to_end_latency_ms", "offload_rtt_ms", "confidence", "offload_agreement", "audit_agreement", "rss_bytes", "cpu_percent", "errors", "reports_dropped", "sequence", "audited", "audit_skipped_busy")
    class ErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_END_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    OFFLOADED_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_FAILURES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BAD_FRAMES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AUDITED_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SKIPPED_BUSY_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    interval_start_unix_ms: int
    interval_end_unix_ms: int
    model: str
    variant_id: str
    frames: int
    offloaded: int
    offload_failures: int
    skipped_frames: int
    dropped_bad_frames: int
    local_latency_ms: Histogram
    end_to_end_latency_ms: Histogram
    offload_rtt_ms: Histogram
    confidence: Histogram
    offload_agreement: Agreement
    audit_agreement: Agreement
    rss_bytes: int
    cpu_percent: float
    errors: _containers.ScalarMap[str, int]
    reports_dropped: int
    sequence: int
    audited: int
    audit_skipped_busy: int
    def __init__(self, device_id: _Optional[str] = ..., interval_start_unix_ms: _Optional[int] = ..., interval_end_unix_ms: _Optional[int] = ..., model: _Optional[str] = ..., variant_id: _Optional[str] = ..., frames: _Optional[int] = ..., offloaded: _Optional[int] = ..., offload_failures: _Optional[int] = ..., skipped_frames: _Optional[int] = ..., dropped_bad_frames: _Optional[int] = ..., local_latency_ms: _Optional[_Union[Histogram, _Mapping]] = ..., end_to_end_latency_ms: _Optional[_Union[Histogram, _Mapping]] = ..., offload_rtt_ms: _Optional[_Union[Histogram, _Mapping]] = ..., confidence: _Optional[_Union[Histogram, _Mapping]] = ..., offload_agreement: _Optional[_Union[Agreement, _Mapping]] = ..., audit_agreement: _Optional[_Union[Agreement, _Mapping]] = ..., rss_bytes: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., errors: _Optional[_Mapping[str, int]] = ..., reports_dropped: _Optional[int] = ..., sequence: _Optional[int] = ..., audited: _Optional[int] = ..., audit_skipped_busy: _Optional[int] = ...) -> None: ...
