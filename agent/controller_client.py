"""The agent's gRPC link to the controller: mutual TLS, deadlines, retries with backoff
(``edgefleet.retry``: tenacity with one jittered schedule)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
import tenacity

from agent.errors import AgentError, ControllerUnreachable
from agent.identity import Credentials
from edgefleet.retry import Backoff, last_error, retrying
from edgefleet.v1 import device_pb2, device_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class DeviceRefused(AgentError):
    """The controller refused this device (revoked, or an unknown certificate)."""


CALL_BACKOFF = Backoff(first_s=0.5, max_s=15.0, jitter=0.2)  # 0.5, 1, 2 ... 15 s, +-20%


def transient(exc: BaseException) -> bool:
    """A gRPC failure worth another try: the controller is down, slow or busy."""
    return isinstance(exc, grpc.RpcError) and exc.code() in RETRYABLE


def describe(exc: BaseException) -> str:
    """How a transient failure reads in the log and in the final error."""
    if isinstance(exc, grpc.RpcError):
        return f"controller unreachable ({exc.code().name}: {exc.details()})"
    return str(exc)


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = 5,
    backoff: Backoff = CALL_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Retry transient failures with exponential backoff and jitter, saying so each time;
    anything else is raised at once. ``call`` sets its own per-call timeout."""
    retry = retrying(
        what=what,
        transient=transient,
        attempts=attempts,
        backoff=backoff,
        describe=describe,
        logger=log,
        sleep=sleep,
    )
    try:
        return retry(call)
    except tenacity.RetryError as gave_up:
        exc = last_error(gave_up)
        raise ControllerUnreachable(f"{what}: {describe(exc)} after {attempts} attempts") from exc


def channel_options(address_host: str, max_message_bytes: int) -> list[tuple[str, object]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.enable_retries", 0),
    ]


def enrollment_channel(address: str, ca_pem: bytes, max_message_bytes: int) -> grpc.Channel:
    """TLS to the controller, trusting only the pinned CA; no client certificate yet."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return grpc.secure_channel(address, credentials, channel_options(address, max_message_bytes))


def device_channel(address: str, creds: Credentials, max_message_bytes: int) -> grpc.Channel:
    """Mutual TLS: the device proves itself with its certificate on every call."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=creds.ca_pem,
        private_key=creds.key_pem,
        certificate_chain=creds.cert_pem,
    )
    return grpc.secure_channel(address, credentials, channel_options(address, max_message_bytes))


class ControllerClient:
    def __init__(self, channel: grpc.Channel, timeout_s: float = 5.0) -> None:
        self.channel = channel
        self._stub = device_pb2_grpc.DeviceServiceStub(channel)
        self._timeout_s = timeout_s

    def heartbeat(
        self, agent_version: str, active_variant_id: str = ""
    ) -> device_pb2.HeartbeatResponse:
        try:
            response: device_pb2.HeartbeatResponse = self._stub.Heartbeat(
                device_pb2.HeartbeatRequest(
                    agent_version=agent_version, active_variant_id=active_variant_id
                ),
                timeout=self._timeout_s,
            )
            return response
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise DeviceRefused(f"the controller refused this device: {exc.details()}") from exc
            raise

    def close(self) -> None:
        self.channel.close()
