from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HardwareFacts(_message.Message):
    __slots__ = ("cpu_model", "arch", "cpu_flags", "cores", "ram_bytes", "runtimes", "onnx_execution_providers", "os", "hostname", "accelerators")
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_FLAGS_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    RAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    ONNX_EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    cpu_model: str
    arch: str
    cpu_flags: _containers.RepeatedScalarFieldContainer[str]
    cores: int
    ram_bytes: int
    runtimes: _containers.RepeatedScalarFieldContainer[str]
    onnx_execution_providers: _containers.RepeatedScalarFieldContainer[str]
    os: str
    hostname: str
    accelerators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpu_model: _Optional[str] = ..., arch: _Optional[str] = ..., cpu_flags: _Optional[_Iterable[str]] = ..., cores: _Optional[int] = ..., ram_bytes: _Optional[int] = ..., runtimes: _Optional[_Iterable[str]] = ..., onnx_execution_providers: _Optional[_Iterable[str]] = ..., os: _Optional[str] = ..., hostname: _Optional[str] = ..., accelerators: _Optional[_Iterable[str]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "name", "profile", "requested_profile", "labels", "state", "online", "last_seen_unix_ms", "facts", "cert_fingerprint", "created_unix_ms", "enrolled_unix_ms", "agent_version")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PROFILE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    CERT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    profile: str
    requested_profile: str
    labels: _containers.ScalarMap[str, str]
    state: str
    online: bool
    last_seen_unix_ms: int
    facts: HardwareFacts
    cert_fingerprint: str
    created_unix_ms: int
    enrolled_unix_ms: int
    agent_version: str
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., profile: _Optional[str] = ..., requested_profile: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen_unix_ms: _Optional[int] = ..., facts: _Optional[_Union[HardwareFacts, _Mapping]] = ..., cert_fingerprint: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., enrolled_unix_ms: _Optional[int] = ..., agent_version: _Optional[str] = ...) -> None: ...
