from edgefleet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("name", "profile", "labels", "token_ttl_seconds")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: str
    labels: _containers.ScalarMap[str, str]
    token_ttl_seconds: int
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., token_ttl_seconds: _Optional[int] = ...) -> None: ...

class RegisterDeviceResponse(_message.Message):
    __slots__ = ("device", "enrollment_token", "token_expires_unix_ms")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    device: _common_pb2.Device
    enrollment_token: str
    token_expires_unix_ms: int
    def __init__(self, device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ..., enrollment_token: _Optional[str] = ..., token_expires_unix_ms: _Optional[int] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("label_selector",)
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    label_selector: _containers.ScalarMap[str, str]
    def __init__(self, label_selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("name_or_id",)
    NAME_OR_ID_FIELD_NUMBER: _ClassVar[int]
    name_or_id: str
    def __init__(self, name_or_id: _Optional[str] = ...) -> None: ...

class GetDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: _common_pb2.Device
    def __init__(self, device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ...) -> None: ...

class RevokeDeviceRequest(_message.Message):
    __slots__ = ("name_or_id",)
    NAME_OR_ID_FIELD_NUMBER: _ClassVar[int]
    name_or_id: str
    def __init__(self, name_or_id: _Optional[str] = ...) -> None: ...

class RevokeDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: _common_pb2.Device
    def __init__(self, device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ...) -> None: ...

class LabelDeviceRequest(_message.Message):
    __slots__ = ("name_or_id", "set", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_OR_ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    name_or_id: str
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name_or_id: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class LabelDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: _common_pb2.Device
    def __init__(self, device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ...) -> None: ...

class ListProfilesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HardwareProfile(_message.Message):
    __slots__ = ("name", "description", "runtimes", "precisions", "memory_budget_bytes", "model_size_budget_bytes", "threads", "builtin", "requires_flags", "arch", "requires_accelerators")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    PRECISIONS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIZE_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FLAGS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    runtimes: _containers.RepeatedScalarFieldContainer[str]
    precisions: _containers.RepeatedScalarFieldContainer[str]
    memory_budget_bytes: int
    model_size_budget_bytes: int
    threads: int
    builtin: bool
    requires_flags: _containers.RepeatedScalarFieldContainer[str]
    arch: str
    requires_accelerators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., runtimes: _Optional[_Iterable[str]] = ..., precisions: _Optional[_Iterable[str]] = ..., memory_budget_bytes: _Optional[int] = ..., model_size_budget_bytes: _Optional[int] = ..., threads: _Optional[int] = ..., builtin: _Optional[bool] = ..., requires_flags: _Optional[_Iterable[str]] = ..., arch: _Optional[str] = ..., requires_accelerators: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("profiles",)
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[HardwareProfile]
    def __init__(self, profiles: _Optional[_Iterable[_Union[HardwareProfile, _Mapping]]] = ...) -> None: ...
