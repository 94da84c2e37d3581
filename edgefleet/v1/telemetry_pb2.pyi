from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceStatus(_message.Message):
    __slots__ = ("device_id", "online", "unix_ms", "agent_version")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    online: bool
    unix_ms: int
    agent_version: str
    def __init__(self, device_id: _Optional[str] = ..., online: _Optional[bool] = ..., unix_ms: _Optional[int] = ..., agent_version: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("device_id", "unix_ms", "uptime_seconds", "active_variant_id", "sequence")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    unix_ms: int
    uptime_seconds: int
    active_variant_id: str
    sequence: int
    def __init__(self, device_id: _Optional[str] = ..., unix_ms: _Optional[int] = ..., uptime_seconds: _Optional[int] = ..., active_variant_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...
