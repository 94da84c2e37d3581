from edgefleet.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "facts", "agent_version")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: str
    facts: _common_pb2.HardwareFacts
    agent_version: str
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[str] = ..., facts: _Optional[_Union[_common_pb2.HardwareFacts, _Mapping]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class MqttCredentials(_message.Message):
    __slots__ = ("url", "username", "password", "topic_prefix")
    URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    TOPIC_PREFIX_FIELD_NUMBER: _ClassVar[int]
    url: str
    username: str
    password: str
    topic_prefix: str
    def __init__(self, url: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., topic_prefix: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("device_id", "certificate_pem", "ca_certificate_pem", "profile", "mqtt", "device_endpoint", "tuf_root_json")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MQTT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TUF_ROOT_JSON_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    certificate_pem: str
    ca_certificate_pem: str
    profile: str
    mqtt: MqttCredentials
    device_endpoint: str
    tuf_root_json: bytes
    def __init__(self, device_id: _Optional[str] = ..., certificate_pem: _Optional[str] = ..., ca_certificate_pem: _Optional[str] = ..., profile: _Optional[str] = ..., mqtt: _Optional[_Union[MqttCredentials, _Mapping]] = ..., device_endpoint: _Optional[str] = ..., tuf_root_json: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_version", "active_variant_id")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    active_variant_id: str
    def __init__(self, agent_version: _Optional[str] = ..., active_variant_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("server_unix_ms", "device_id", "profile")
    SERVER_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    server_unix_ms: int
    device_id: str
    profile: str
    def __init__(self, server_unix_ms: _Optional[int] = ..., device_id: _Optional[str] = ..., profile: _Optional[str] = ...) -> None: ...
