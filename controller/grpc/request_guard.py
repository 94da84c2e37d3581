"""Device calls are identified before their request is read, and may wait for it only briefly.

gRPC's threaded server reads a unary request inside a worker thread, before any handler runs:
a peer holding a device certificate (even a revoked one: its certificate still passes the TLS
handshake) could open calls, never send their request and hold one worker per call. The guard
hands such methods their request as a stream (gRPC then calls the handler at once), checks the
caller's certificate first (an unknown or revoked device is refused without being read), lets
each device have at most ``per_device`` calls waiting for their request (a call finding none
free waits ``slot_wait_s`` for one, then is refused), and cancels a call whose request has not
arrived within ``read_timeout_s``. Then the real handler runs as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from controller.grpc.early_refusal import Continuation, read_request
from controller.grpc.error_status import abort_with_status
from edgefleet.errors import EdgeFleetError, ResourceExhausted

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0  # at most one refusal warning per device this often


@dataclass(frozen=True)
class ReadLimits:
    per_device: int = 8  # a device's calls waiting for their request at once (the agent
    # itself keeps at most 8 offloads in flight)
    read_timeout_s: float = 10.0  # longest wait for a request, once the call has started
    slot_wait_s: float = 0.05  # longest wait for a free slot before RESOURCE_EXHAUSTED


class RequestGuard(grpc.ServerInterceptor):
    """``identify(context)`` is the caller's device id (raises an EdgeFleetError, e.g.
    Unauthenticated, for an unknown or revoked certificate); ``guarded(method)`` says which
    methods it applies to (the device-facing ones)."""

    def __init__(
        self,
        identify: Callable[[grpc.ServicerContext], str],
        guarded: Callable[[str], bool],
        limits: ReadLimits = ReadLimits(),
    ) -> None:
        self._identify = identify
        self._guarded = guarded
        self.limits = limits
        self._waiting: dict[str, int] = {}
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._next_log: dict[str, float] = {}  # device id -> when its next refusal is logged
        self.refused = 0  # calls refused for too many waiting reads

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.request_streaming or not self._guarded(method):
            return handler
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            streaming = handler.unary_stream

            def call_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                request = self._read(method, requests, context)
                yield from streaming(request, context)

            return grpc.stream_stream_rpc_method_handler(call_stream, **codec)
        unary = handler.unary_unary

        def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return unary(self._read(method, requests, context), context)

        return grpc.stream_unary_rpc_method_handler(call, **codec)

    def _read(self, method: str, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        """The call's one request, read only for a known device with a free read slot."""
        try:
            device_id = self._identify(context)
            self._take(device_id)
        except EdgeFleetError as exc:
            abort_with_status(context, method, exc)
        try:  # a request that does not come in time: the call is cancelled, logged at INFO
            return read_request(method, requests, context, self.limits.read_timeout_s)
        finally:
            self._give_back(device_id)

    def _take(self, device_id: str) -> None:
        """A read slot of the device; when all are taken, a short wait for one (a burst of
        honest calls frees its slots within milliseconds), then RESOURCE_EXHAUSTED."""
        with self._freed:
            if not self._freed.wait_for(
                lambda: self._waiting.get(device_id, 0) < self.limits.per_device,
                self.limits.slot_wait_s,
            ):
                self.refused += 1
                self._log_refusal(device_id)
                raise ResourceExhausted(
                    f"{self.limits.per_device} calls of this device are still sending their request"
                )
            self._waiting[device_id] = self._waiting.get(device_id, 0) + 1

    def _log_refusal(self, device_id: str) -> None:
        log.debug("call refused for %s: no free read slot", device_id)
        now = time.monotonic()
        if now >= self._next_log.get(device_id, 0.0):
            self._next_log[device_id] = now + LOG_EVERY_S
            log.warning(
                "call refused for %s: %d of its calls still sending their request (%d refused "
                "in all)",
                device_id,
                self.limits.per_device,
                self.refused,
            )

    def _give_back(self, device_id: str) -> None:
        with self._freed:
            left = self._waiting.get(device_id, 1) - 1
            if left > 0:
                self._waiting[device_id] = left
            else:
                self._waiting.pop(device_id, None)
            self._freed.notify_all()
