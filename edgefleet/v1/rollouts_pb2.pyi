from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DesiredState(_message.Message):
    __slots__ = ("device_id", "model", "version", "variant_id", "target_path", "sha256", "length", "rollout_id", "revision", "target_json", "offload_max_fps")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TARGET_JSON_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_MAX_FPS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    model: str
    version: int
    variant_id: str
    target_path: str
    sha256: str
    length: int
    rollout_id: str
    revision: int
    target_json: str
    offload_max_fps: float
    def __init__(self, device_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., variant_id: _Optional[str] = ..., target_path: _Optional[str] = ..., sha256: _Optional[str] = ..., length: _Optional[int] = ..., rollout_id: _Optional[str] = ..., revision: _Optional[int] = ..., target_json: _Optional[str] = ..., offload_max_fps: _Optional[float] = ...) -> None: ...

class GetDesiredStateRequest(_message.Message):
    __slots__ = ("current_variant",)
    CURRENT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    current_variant: str
    def __init__(self, current_variant: _Optional[str] = ...) -> None: ...

class GetDesiredStateResponse(_message.Message):
    __slots__ = ("assigned", "desired")
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    assigned: bool
    desired: DesiredState
    def __init__(self, assigned: _Optional[bool] = ..., desired: _Optional[_Union[DesiredState, _Mapping]] = ...) -> None: ...

class ReportUpdateStatusRequest(_message.Message):
    __slots__ = ("state", "variant_id", "reason", "current_variant", "revision")
    STATE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    state: str
    variant_id: str
    reason: str
    current_variant: str
    revision: int
    def __init__(self, state: _Optional[str] = ..., variant_id: _Optional[str] = ..., reason: _Optional[str] = ..., current_variant: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ReportUpdateStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("model", "version", "selector", "stages", "min_devices", "soak_seconds", "gates", "max_concurrent_downloads", "no_auto_rollback", "min_samples", "install_failure_threshold", "target", "gate_timeout_seconds")
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_DEVICES_FIELD_NUMBER: _ClassVar[int]
    SOAK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    NO_AUTO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    INSTALL_FAILURE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    GATE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    selector: _containers.ScalarMap[str, str]
    stages: _containers.RepeatedScalarFieldContainer[float]
    min_devices: int
    soak_seconds: float
    gates: _containers.RepeatedScalarFieldContainer[str]
    max_concurrent_downloads: int
    no_auto_rollback: bool
    min_samples: int
    install_failure_threshold: float
    target: str
    gate_timeout_seconds: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., selector: _Optional[_Mapping[str, str]] = ..., stages: _Optional[_Iterable[float]] = ..., min_devices: _Optional[int] = ..., soak_seconds: _Optional[float] = ..., gates: _Optional[_Iterable[str]] = ..., max_concurrent_downloads: _Optional[int] = ..., no_auto_rollback: _Optional[bool] = ..., min_samples: _Optional[int] = ..., install_failure_threshold: _Optional[float] = ..., target: _Optional[str] = ..., gate_timeout_seconds: _Optional[float] = ...) -> None: ...

class RolloutSummary(_message.Message):
    __slots__ = ("rollout_id", "model", "version", "phase", "stage", "stages", "devices", "healthy", "created_unix_ms", "updated_unix_ms")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    model: str
    version: int
    phase: str
    stage: int
    stages: int
    devices: int
    healthy: int
    created_unix_ms: int
    updated_unix_ms: int
    def __init__(self, rollout_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., phase: _Optional[str] = ..., stage: _Optional[int] = ..., stages: _Optional[int] = ..., devices: _Optional[int] = ..., healthy: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., updated_unix_ms: _Optional[int] = ...) -> None: ...

class StartRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: RolloutSummary
    def __init__(self, rollout: _Optional[_Union[RolloutSummary, _Mapping]] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[RolloutSummary]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[RolloutSummary, _Mapping]]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class RolloutEvent(_message.Message):
    __slots__ = ("unix_ms", "level", "message")
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    unix_ms: int
    level: str
    message: str
    def __init__(self, unix_ms: _Optional[int] = ..., level: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout", "spec_json", "state_json", "explanation", "events")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    rollout: RolloutSummary
    spec_json: str
    state_json: str
    explanation: str
    events: _containers.RepeatedCompositeFieldContainer[RolloutEvent]
    def __init__(self, rollout: _Optional[_Union[RolloutSummary, _Mapping]] = ..., spec_json: _Optional[str] = ..., state_json: _Optional[str] = ..., explanation: _Optional[str] = ..., events: _Optional[_Iterable[_Union[RolloutEvent, _Mapping]]] = ...) -> None: ...

class RolloutCommandRequest(_message.Message):
    __slots__ = ("rollout_id", "command", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    command: str
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., command: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RolloutCommandResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: RolloutSummary
    def __init__(self, rollout: _Optional[_Union[RolloutSummary, _Mapping]] = ...) -> None: ...
