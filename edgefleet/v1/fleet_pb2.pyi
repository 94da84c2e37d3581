from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FleetStatusRequest(_message.Message):
    __slots__ = ("label_selector", "window_seconds", "page_size", "page_token")
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    label_selector: _containers.ScalarMap[str, str]
    window_seconds: int
    page_size: int
    page_token: str
    def __init__(self, label_selector: _Optional[_Mapping[str, str]] = ..., window_seconds: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DeviceInference(_message.Message):
    __slots__ = ("device_id", "name", "online", "last_seen_unix_ms", "model", "variant_id", "frames", "frames_per_second", "p50_latency_ms", "p95_latency_ms", "offload_rate", "offload_failure_rate", "has_accuracy", "accuracy", "accuracy_low", "accuracy_high", "agreement_pairs", "agreement", "reports", "bad_frames", "reports_dropped", "cloud_pairs", "has_latency", "last_report_unix_ms", "skipped_frames", "accuracy_method", "accuracy_why", "audit_pairs", "offload_pairs", "labelled_pairs", "has_cbpe", "cbpe_accuracy", "cbpe_low", "cbpe_high", "accuracy_evidence_json", "audit_skipped_busy", "audit_fraction")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    P50_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_RATE_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    HAS_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_LOW_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_HIGH_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    BAD_FRAMES_FIELD_NUMBER: _ClassVar[int]
    REPORTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    CLOUD_PAIRS_FIELD_NUMBER: _ClassVar[int]
    HAS_LATENCY_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_METHOD_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_WHY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_PAIRS_FIELD_NUMBER: _ClassVar[int]
    LABELLED_PAIRS_FIELD_NUMBER: _ClassVar[int]
    HAS_CBPE_FIELD_NUMBER: _ClassVar[int]
    CBPE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CBPE_LOW_FIELD_NUMBER: _ClassVar[int]
    CBPE_HIGH_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SKIPPED_BUSY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    online: bool
    last_seen_unix_ms: int
    model: str
    variant_id: str
    frames: int
    frames_per_second: float
    p50_latency_ms: float
    p95_latency_ms: float
    offload_rate: float
    offload_failure_rate: float
    has_accuracy: bool
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    agreement_pairs: int
    agreement: float
    reports: int
    bad_frames: int
    reports_dropped: int
    cloud_pairs: int
    has_latency: bool
    last_report_unix_ms: int
    skipped_frames: int
    accuracy_method: str
    accuracy_why: str
    audit_pairs: int
    offload_pairs: int
    labelled_pairs: int
    has_cbpe: bool
    cbpe_accuracy: float
    cbpe_low: float
    cbpe_high: float
    accuracy_evidence_json: str
    audit_skipped_busy: int
    audit_fraction: float
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen_unix_ms: _Optional[int] = ..., model: _Optional[str] = ..., variant_id: _Optional[str] = ..., frames: _Optional[int] = ..., frames_per_second: _Optional[float] = ..., p50_latency_ms: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., offload_rate: _Optional[float] = ..., offload_failure_rate: _Optional[float] = ..., has_accuracy: _Optional[bool] = ..., accuracy: _Optional[float] = ..., accuracy_low: _Optional[float] = ..., accuracy_high: _Optional[float] = ..., agreement_pairs: _Optional[int] = ..., agreement: _Optional[float] = ..., reports: _Optional[int] = ..., bad_frames: _Optional[int] = ..., reports_dropped: _Optional[int] = ..., cloud_pairs: _Optional[int] = ..., has_latency: _Optional[bool] = ..., last_report_unix_ms: _Optional[int] = ..., skipped_frames: _Optional[int] = ..., accuracy_method: _Optional[str] = ..., accuracy_why: _Optional[str] = ..., audit_pairs: _Optional[int] = ..., offload_pairs: _Optional[int] = ..., labelled_pairs: _Optional[int] = ..., has_cbpe: _Optional[bool] = ..., cbpe_accuracy: _Optional[float] = ..., cbpe_low: _Optional[float] = ..., cbpe_high: _Optional[float] = ..., accuracy_evidence_json: _Optional[str] = ..., audit_skipped_busy: _Optional[int] = ..., audit_fraction: _Optional[float] = ...) -> None: ...

class LabelledFrame(_message.Message):
    __slots__ = ("frame_key", "device_id", "model", "edge_variant_id", "frame_id", "seen_unix_ms", "edge_label", "edge_confidence", "cloud_label", "cloud_confidence", "audit", "labelled", "label", "labelled_unix_ms", "edge_label_name", "cloud_label_name", "label_name")
    FRAME_KEY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EDGE_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EDGE_LABEL_FIELD_NUMBER: _ClassVar[int]
    EDGE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CLOUD_LABEL_FIELD_NUMBER: _ClassVar[int]
    CLOUD_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABELLED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EDGE_LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CLOUD_LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    frame_key: str
    device_id: str
    model: str
    edge_variant_id: str
    frame_id: str
    seen_unix_ms: int
    edge_label: int
    edge_confidence: float
    cloud_label: int
    cloud_confidence: float
    audit: bool
    labelled: bool
    label: int
    labelled_unix_ms: int
    edge_label_name: str
    cloud_label_name: str
    label_name: str
    def __init__(self, frame_key: _Optional[str] = ..., device_id: _Optional[str] = ..., model: _Optional[str] = ..., edge_variant_id: _Optional[str] = ..., frame_id: _Optional[str] = ..., seen_unix_ms: _Optional[int] = ..., edge_label: _Optional[int] = ..., edge_confidence: _Optional[float] = ..., cloud_label: _Optional[int] = ..., cloud_confidence: _Optional[float] = ..., audit: _Optional[bool] = ..., labelled: _Optional[bool] = ..., label: _Optional[int] = ..., labelled_unix_ms: _Optional[int] = ..., edge_label_name: _Optional[str] = ..., cloud_label_name: _Optional[str] = ..., label_name: _Optional[str] = ...) -> None: ...

class ListFramesRequest(_message.Message):
    __slots__ = ("labelled", "device_id", "limit")
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    labelled: bool
    device_id: str
    limit: int
    def __init__(self, labelled: _Optional[bool] = ..., device_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListFramesResponse(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[LabelledFrame]
    def __init__(self, frames: _Optional[_Iterable[_Union[LabelledFrame, _Mapping]]] = ...) -> None: ...

class LabelFrameRequest(_message.Message):
    __slots__ = ("frame_key", "label")
    FRAME_KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    frame_key: str
    label: str
    def __init__(self, frame_key: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class LabelFrameResponse(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: LabelledFrame
    def __init__(self, frame: _Optional[_Union[LabelledFrame, _Mapping]] = ...) -> None: ...

class FleetStatusResponse(_message.Message):
    __slots__ = ("devices", "window_seconds", "unix_ms", "next_page_token")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceInference]
    window_seconds: int
    unix_ms: int
    next_page_token: str
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceInference, _Mapping]]] = ..., window_seconds: _Optional[int] = ..., unix_ms: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "rule", "subject", "device_id", "severity", "message", "started_unix_ms", "ended_unix_ms", "active", "evidence_json", "last_evidence_json")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    LAST_EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    alert_id: int
    rule: str
    subject: str
    device_id: str
    severity: str
    message: str
    started_unix_ms: int
    ended_unix_ms: int
    active: bool
    evidence_json: str
    last_evidence_json: str
    def __init__(self, alert_id: _Optional[int] = ..., rule: _Optional[str] = ..., subject: _Optional[str] = ..., device_id: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ..., started_unix_ms: _Optional[int] = ..., ended_unix_ms: _Optional[int] = ..., active: _Optional[bool] = ..., evidence_json: _Optional[str] = ..., last_evidence_json: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("include_resolved", "since_unix_ms", "limit")
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    include_resolved: bool
    since_unix_ms: int
    limit: int
    def __init__(self, include_resolved: _Optional[bool] = ..., since_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class FleetEvent(_message.Message):
    __slots__ = ("event_id", "unix_ms", "kind", "device_id", "subject", "message", "data_json")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    unix_ms: int
    kind: str
    device_id: str
    subject: str
    message: str
    data_json: str
    def __init__(self, event_id: _Optional[int] = ..., unix_ms: _Optional[int] = ..., kind: _Optional[str] = ..., device_id: _Optional[str] = ..., subject: _Optional[str] = ..., message: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("since_unix_ms", "kinds", "device_id", "limit")
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix_ms: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    device_id: str
    limit: int
    def __init__(self, since_unix_ms: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., device_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FleetEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FleetEvent, _Mapping]]] = ...) -> None: ...

class DriftScore(_message.Message):
    __slots__ = ("kind", "subject", "name", "variant_id", "devices", "frames", "confidence_frames", "has_psi", "psi", "has_agreement", "agreement", "agreement_low", "agreement_high", "agreement_pairs", "has_expected_agreement", "expected_agreement", "offload_budget_fps")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    HAS_PSI_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    HAS_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_LOW_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_HIGH_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    HAS_EXPECTED_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_BUDGET_FPS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    subject: str
    name: str
    variant_id: str
    devices: int
    frames: int
    confidence_frames: int
    has_psi: bool
    psi: float
    has_agreement: bool
    agreement: float
    agreement_low: float
    agreement_high: float
    agreement_pairs: int
    has_expected_agreement: bool
    expected_agreement: float
    offload_budget_fps: float
    def __init__(self, kind: _Optional[str] = ..., subject: _Optional[str] = ..., name: _Optional[str] = ..., variant_id: _Optional[str] = ..., devices: _Optional[int] = ..., frames: _Optional[int] = ..., confidence_frames: _Optional[int] = ..., has_psi: _Optional[bool] = ..., psi: _Optional[float] = ..., has_agreement: _Optional[bool] = ..., agreement: _Optional[float] = ..., agreement_low: _Optional[float] = ..., agreement_high: _Optional[float] = ..., agreement_pairs: _Optional[int] = ..., has_expected_agreement: _Optional[bool] = ..., expected_agreement: _Optional[float] = ..., offload_budget_fps: _Optional[float] = ...) -> None: ...

class FleetDriftRequest(_message.Message):
    __slots__ = ("window_seconds",)
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    window_seconds: int
    def __init__(self, window_seconds: _Optional[int] = ...) -> None: ...

class FleetDriftResponse(_message.Message):
    __slots__ = ("scores", "window_seconds")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[DriftScore]
    window_seconds: int
    def __init__(self, scores: _Optional[_Iterable[_Union[DriftScore, _Mapping]]] = ..., window_seconds: _Optional[int] = ...) -> None: ...
