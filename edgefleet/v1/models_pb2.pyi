from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UploadArtifactChunk(_message.Message):
    __slots__ = ("data", "expected_sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    expected_sha256: str
    def __init__(self, data: _Optional[bytes] = ..., expected_sha256: _Optional[str] = ...) -> None: ...

class UploadArtifactResponse(_message.Message):
    __slots__ = ("sha256", "size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class AddModelRequest(_message.Message):
    __slots__ = ("name", "onnx_sha256", "validation_sha256", "calibration_sha256", "labels", "preprocess_json", "cloud_for")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONNX_SHA256_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SHA256_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_SHA256_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_JSON_FIELD_NUMBER: _ClassVar[int]
    CLOUD_FOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    onnx_sha256: str
    validation_sha256: str
    calibration_sha256: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    preprocess_json: str
    cloud_for: str
    def __init__(self, name: _Optional[str] = ..., onnx_sha256: _Optional[str] = ..., validation_sha256: _Optional[str] = ..., calibration_sha256: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., preprocess_json: _Optional[str] = ..., cloud_for: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "role", "cloud_for", "source_sha256", "source_size", "input_name", "input_shape", "input_dtype", "layout", "num_classes", "preprocess_json", "labels", "build_status", "variants_built", "created_unix_ms", "rebuilt_from", "serving_plan")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLOUD_FOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_JSON_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BUILD_STATUS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_BUILT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REBUILT_FROM_FIELD_NUMBER: _ClassVar[int]
    SERVING_PLAN_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    role: str
    cloud_for: str
    source_sha256: str
    source_size: int
    input_name: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    input_dtype: str
    layout: str
    num_classes: int
    preprocess_json: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    build_status: str
    variants_built: int
    created_unix_ms: int
    rebuilt_from: int
    serving_plan: ServingPlan
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., role: _Optional[str] = ..., cloud_for: _Optional[str] = ..., source_sha256: _Optional[str] = ..., source_size: _Optional[int] = ..., input_name: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., input_dtype: _Optional[str] = ..., layout: _Optional[str] = ..., num_classes: _Optional[int] = ..., preprocess_json: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., build_status: _Optional[str] = ..., variants_built: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., rebuilt_from: _Optional[int] = ..., serving_plan: _Optional[_Union[ServingPlan, _Mapping]] = ...) -> None: ...

class ServingPlan(_message.Message):
    __slots__ = ("max_batch_size", "max_queue_delay_ms", "source", "reason", "summary", "batches", "load", "edge_model")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    EDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_queue_delay_ms: float
    source: str
    reason: str
    summary: str
    batches: _containers.RepeatedCompositeFieldContainer[BatchFigures]
    load: LoadFigures
    edge_model: str
    def __init__(self, max_batch_size: _Optional[int] = ..., max_queue_delay_ms: _Optional[float] = ..., source: _Optional[str] = ..., reason: _Optional[str] = ..., summary: _Optional[str] = ..., batches: _Optional[_Iterable[_Union[BatchFigures, _Mapping]]] = ..., load: _Optional[_Union[LoadFigures, _Mapping]] = ..., edge_model: _Optional[str] = ...) -> None: ...

class BatchFigures(_message.Message):
    __slots__ = ("batch_size", "median_ms", "p95_ms", "frames_per_s", "gain", "gain_lo", "gain_hi", "rounds")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_S_FIELD_NUMBER: _ClassVar[int]
    GAIN_FIELD_NUMBER: _ClassVar[int]
    GAIN_LO_FIELD_NUMBER: _ClassVar[int]
    GAIN_HI_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    median_ms: float
    p95_ms: float
    frames_per_s: float
    gain: float
    gain_lo: float
    gain_hi: float
    rounds: int
    def __init__(self, batch_size: _Optional[int] = ..., median_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., frames_per_s: _Optional[float] = ..., gain: _Optional[float] = ..., gain_lo: _Optional[float] = ..., gain_hi: _Optional[float] = ..., rounds: _Optional[int] = ...) -> None: ...

class LoadFigures(_message.Message):
    __slots__ = ("batch_size", "clients", "direct_frames_per_s", "batched_frames_per_s", "gain", "gain_lo", "gain_hi", "p95_ratio", "rounds")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FRAMES_PER_S_FIELD_NUMBER: _ClassVar[int]
    BATCHED_FRAMES_PER_S_FIELD_NUMBER: _ClassVar[int]
    GAIN_FIELD_NUMBER: _ClassVar[int]
    GAIN_LO_FIELD_NUMBER: _ClassVar[int]
    GAIN_HI_FIELD_NUMBER: _ClassVar[int]
    P95_RATIO_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    clients: int
    direct_frames_per_s: float
    batched_frames_per_s: float
    gain: float
    gain_lo: float
    gain_hi: float
    p95_ratio: float
    rounds: int
    def __init__(self, batch_size: _Optional[int] = ..., clients: _Optional[int] = ..., direct_frames_per_s: _Optional[float] = ..., batched_frames_per_s: _Optional[float] = ..., gain: _Optional[float] = ..., gain_lo: _Optional[float] = ..., gain_hi: _Optional[float] = ..., p95_ratio: _Optional[float] = ..., rounds: _Optional[int] = ...) -> None: ...

class AddModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelVersion
    def __init__(self, model: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class BuildModelRequest(_message.Message):
    __slots__ = ("name", "version", "profiles", "no_tflite", "only_variants", "measure_runs", "rebuild", "training_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NO_TFLITE_FIELD_NUMBER: _ClassVar[int]
    ONLY_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    MEASURE_RUNS_FIELD_NUMBER: _ClassVar[int]
    REBUILD_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    profiles: _containers.RepeatedScalarFieldContainer[str]
    no_tflite: bool
    only_variants: _containers.RepeatedScalarFieldContainer[str]
    measure_runs: int
    rebuild: bool
    training_sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., profiles: _Optional[_Iterable[str]] = ..., no_tflite: _Optional[bool] = ..., only_variants: _Optional[_Iterable[str]] = ..., measure_runs: _Optional[int] = ..., rebuild: _Optional[bool] = ..., training_sha256: _Optional[str] = ...) -> None: ...

class BuildProgress(_message.Message):
    __slots__ = ("variant", "phase", "index")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    variant: str
    phase: str
    index: int
    def __init__(self, variant: _Optional[str] = ..., phase: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class BuildModelEvent(_message.Message):
    __slots__ = ("progress", "report_json")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    progress: BuildProgress
    report_json: str
    def __init__(self, progress: _Optional[_Union[BuildProgress, _Mapping]] = ..., report_json: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class ListVariantsRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class VariantInfo(_message.Message):
    __slots__ = ("variant_id", "variant", "runtime", "precision", "status", "reason", "sha256", "size_bytes", "zstd_bytes", "latency_median_ms", "latency_p95_ms", "accuracy", "accuracy_drop_pp", "agreement", "ece", "temperature", "metrics_json")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ZSTD_BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_DROP_PP_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    variant: str
    runtime: str
    precision: str
    status: str
    reason: str
    sha256: str
    size_bytes: int
    zstd_bytes: int
    latency_median_ms: float
    latency_p95_ms: float
    accuracy: float
    accuracy_drop_pp: float
    agreement: float
    ece: float
    temperature: float
    metrics_json: str
    def __init__(self, variant_id: _Optional[str] = ..., variant: _Optional[str] = ..., runtime: _Optional[str] = ..., precision: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., zstd_bytes: _Optional[int] = ..., latency_median_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., accuracy: _Optional[float] = ..., accuracy_drop_pp: _Optional[float] = ..., agreement: _Optional[float] = ..., ece: _Optional[float] = ..., temperature: _Optional[float] = ..., metrics_json: _Optional[str] = ...) -> None: ...

class ProfileSelection(_message.Message):
    __slots__ = ("profile", "variant", "variant_id", "latency_ms", "latency_source", "rejected", "target_path")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    profile: str
    variant: str
    variant_id: str
    latency_ms: float
    latency_source: str
    rejected: _containers.ScalarMap[str, str]
    target_path: str
    def __init__(self, profile: _Optional[str] = ..., variant: _Optional[str] = ..., variant_id: _Optional[str] = ..., latency_ms: _Optional[float] = ..., latency_source: _Optional[str] = ..., rejected: _Optional[_Mapping[str, str]] = ..., target_path: _Optional[str] = ...) -> None: ...

class ListVariantsResponse(_message.Message):
    __slots__ = ("model", "source_accuracy", "variants", "selections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: ModelVersion
    source_accuracy: float
    variants: _containers.RepeatedCompositeFieldContainer[VariantInfo]
    selections: _containers.RepeatedCompositeFieldContainer[ProfileSelection]
    def __init__(self, model: _Optional[_Union[ModelVersion, _Mapping]] = ..., source_accuracy: _Optional[float] = ..., variants: _Optional[_Iterable[_Union[VariantInfo, _Mapping]]] = ..., selections: _Optional[_Iterable[_Union[ProfileSelection, _Mapping]]] = ...) -> None: ...

class DistillModelRequest(_message.Message):
    __slots__ = ("teacher", "teacher_version", "student", "data_sha256", "name", "temperature", "alpha", "alpha_set", "epochs", "batch_size", "max_seconds", "extra_data_sha256", "init_from_version")
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    TEACHER_VERSION_FIELD_NUMBER: _ClassVar[int]
    STUDENT_FIELD_NUMBER: _ClassVar[int]
    DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    ALPHA_SET_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    INIT_FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    teacher: str
    teacher_version: int
    student: str
    data_sha256: str
    name: str
    temperature: float
    alpha: float
    alpha_set: bool
    epochs: int
    batch_size: int
    max_seconds: float
    extra_data_sha256: _containers.RepeatedScalarFieldContainer[str]
    init_from_version: int
    def __init__(self, teacher: _Optional[str] = ..., teacher_version: _Optional[int] = ..., student: _Optional[str] = ..., data_sha256: _Optional[str] = ..., name: _Optional[str] = ..., temperature: _Optional[float] = ..., alpha: _Optional[float] = ..., alpha_set: _Optional[bool] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., max_seconds: _Optional[float] = ..., extra_data_sha256: _Optional[_Iterable[str]] = ..., init_from_version: _Optional[int] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("phase", "fraction", "message")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    fraction: float
    message: str
    def __init__(self, phase: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class TrainingEvent(_message.Message):
    __slots__ = ("progress", "report_json")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    progress: TrainingProgress
    report_json: str
    def __init__(self, progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., report_json: _Optional[str] = ...) -> None: ...

class HardExamplePolicy(_message.Message):
    __slots__ = ("model", "enabled", "max_bytes", "retention_s", "device_ids", "device_labels", "created_unix_ms", "updated_unix_ms")
    class DeviceLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RETENTION_S_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    enabled: bool
    max_bytes: int
    retention_s: int
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    device_labels: _containers.ScalarMap[str, str]
    created_unix_ms: int
    updated_unix_ms: int
    def __init__(self, model: _Optional[str] = ..., enabled: _Optional[bool] = ..., max_bytes: _Optional[int] = ..., retention_s: _Optional[int] = ..., device_ids: _Optional[_Iterable[str]] = ..., device_labels: _Optional[_Mapping[str, str]] = ..., created_unix_ms: _Optional[int] = ..., updated_unix_ms: _Optional[int] = ...) -> None: ...

class HardExampleCounts(_message.Message):
    __slots__ = ("frames", "bytes", "oldest_unix_ms", "newest_unix_ms", "dropped_cap", "dropped_retention", "dropped_busy")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    NEWEST_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_CAP_FIELD_NUMBER: _ClassVar[int]
    DROPPED_RETENTION_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BUSY_FIELD_NUMBER: _ClassVar[int]
    frames: int
    bytes: int
    oldest_unix_ms: int
    newest_unix_ms: int
    dropped_cap: int
    dropped_retention: int
    dropped_busy: int
    def __init__(self, frames: _Optional[int] = ..., bytes: _Optional[int] = ..., oldest_unix_ms: _Optional[int] = ..., newest_unix_ms: _Optional[int] = ..., dropped_cap: _Optional[int] = ..., dropped_retention: _Optional[int] = ..., dropped_busy: _Optional[int] = ...) -> None: ...

class GetHardExamplePolicyRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class SetHardExamplePolicyRequest(_message.Message):
    __slots__ = ("model", "enabled", "max_bytes", "retention_s", "set_devices", "devices", "set_device_labels", "device_labels", "purge")
    class DeviceLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RETENTION_S_FIELD_NUMBER: _ClassVar[int]
    SET_DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SET_DEVICE_LABELS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LABELS_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    enabled: bool
    max_bytes: int
    retention_s: int
    set_devices: bool
    devices: _containers.RepeatedScalarFieldContainer[str]
    set_device_labels: bool
    device_labels: _containers.ScalarMap[str, str]
    purge: bool
    def __init__(self, model: _Optional[str] = ..., enabled: _Optional[bool] = ..., max_bytes: _Optional[int] = ..., retention_s: _Optional[int] = ..., set_devices: _Optional[bool] = ..., devices: _Optional[_Iterable[str]] = ..., set_device_labels: _Optional[bool] = ..., device_labels: _Optional[_Mapping[str, str]] = ..., purge: _Optional[bool] = ...) -> None: ...

class HardExamplePolicyResponse(_message.Message):
    __slots__ = ("policy", "counts", "ceiling_bytes")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CEILING_BYTES_FIELD_NUMBER: _ClassVar[int]
    policy: HardExamplePolicy
    counts: HardExampleCounts
    ceiling_bytes: int
    def __init__(self, policy: _Optional[_Union[HardExamplePolicy, _Mapping]] = ..., counts: _Optional[_Union[HardExampleCounts, _Mapping]] = ..., ceiling_bytes: _Optional[int] = ...) -> None: ...

class RetrainModelRequest(_message.Message):
    __slots__ = ("model", "since_unix_ms", "data_sha256", "epochs", "max_seconds", "batch_size")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model: str
    since_unix_ms: int
    data_sha256: str
    epochs: int
    max_seconds: float
    batch_size: int
    def __init__(self, model: _Optional[str] = ..., since_unix_ms: _Optional[int] = ..., data_sha256: _Optional[str] = ..., epochs: _Optional[int] = ..., max_seconds: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...
