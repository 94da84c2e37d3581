"""Bounds on device-facing server streams (DownloadArtifact), so one device cannot hold the
server's worker threads.

A server-streaming handler keeps its worker thread until the stream ends, and a send blocks
while the peer does not read. So: at most ``per_device`` such streams per device and ``total``
in all (a fraction of the workers); beyond them the call is refused with RESOURCE_EXHAUSTED.
A stream whose next message has waited ``idle_s`` for the peer, or that has run for ``max_s``,
is cancelled by a watchdog thread. A slot is given back only when its handler has returned
(a cancelled send can stay blocked until the connection goes: the server's keepalive closes
a connection that stops reading, see controller.grpc.server), so a stalled device never holds
more than its slots.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from edgefleet.errors import ResourceExhausted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    per_device: int = 2
    total: int = 8
    idle_s: float = 10.0  # a 256 KiB chunk not taken in 10 s: under 26 KB/s
    max_s: float = 900.0  # downloads resume from an offset, so a cut costs little

    @classmethod
    def for_workers(cls, workers: int) -> StreamLimits:
        """Streams may hold a quarter of the workers (at least one)."""
        total = max(1, workers // 4)
        return cls(per_device=min(2, total), total=total)


@dataclass
class _Stream:
    key: str
    context: grpc.ServicerContext
    started: float
    waiting_since: float | None = None  # when the last message was handed to gRPC
    cancelled: bool = False


class StreamSlots:
    """Counts open streams per key, and cancels the ones that stall (one watchdog thread,
    running only while streams are open)."""

    def __init__(self, limits: StreamLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Condition()
        self._open: dict[int, _Stream] = {}
        self._ids = itertools.count()
        self._watchdog: threading.Thread | None = None
        self.refused = 0
        self.cancelled = 0

    def open(self, key: str, context: grpc.ServicerContext) -> int:
        with self._lock:
            mine = sum(1 for s in self._open.values() if s.key == key)
            if mine >= self.limits.per_device or len(self._open) >= self.limits.total:
                self.refused += 1
                log.warning(
                    "stream refused for %s: %d of its %d, %d of %d in all",
                    key, mine, self.limits.per_device, len(self._open), self.limits.total,
                )  # fmt: skip
                raise ResourceExhausted(
                    f"too many concurrent downloads ({self.limits.per_device} per device, "
                    f"{self.limits.total} in all): retry later",
                    retry_after_s=1.0,
                )
            stream_id = next(self._ids)
            self._open[stream_id] = _Stream(key, context, self._clock())
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch, name="grpc-stream-watchdog", daemon=True
                )
                self._watchdog.start()
            return stream_id

    def sending(self, stream_id: int) -> None:
        """A message goes to gRPC: the stream waits for the peer to take it."""
        with self._lock:
            if (stream := self._open.get(stream_id)) is not None:
                stream.waiting_since = self._clock()

    def sent(self, stream_id: int) -> None:
        with self._lock:
            if (stream := self._open.get(stream_id)) is not None:
                stream.waiting_since = None

    def close(self, stream_id: int) -> None:
        with self._lock:
            self._open.pop(stream_id, None)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def _watch(self) -> None:
        period = min(1.0, self.limits.idle_s / 4)
        while True:
            with self._lock:
                if not self._open:
                    self._watchdog = None
                    return
                now = self._clock()
                stalled = [
                    s for s in self._open.values() if not s.cancelled and self._stalled(s, now)
                ]
                for stream in stalled:
                    stream.cancelled = True
                self.cancelled += len(stalled)
            for stream in stalled:
                log.warning("cancelling a stalled stream of %s", stream.key)
                stream.context.cancel()
            time.sleep(period)

    def _stalled(self, stream: _Stream, now: float) -> bool:
        if now - stream.started > self.limits.max_s:
            return True
        return stream.waiting_since is not None and now - stream.waiting_since > self.limits.idle_s


class StreamGuard(grpc.ServerInterceptor):
    """Puts server-streaming methods that `applies(method)` under `slots`; `who(context)` names
    the caller (the device id). Install it after the auth interceptor, so the caller is known."""

    def __init__(
        self,
        slots: StreamSlots,
        who: Callable[[grpc.ServicerContext], str],
        applies: Callable[[str], bool],
    ) -> None:
        self.slots, self._who, self._applies = slots, who, applies

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler.unary_stream:
            return handler
        if not self._applies(handler_call_details.method):
            return handler
        return handler._replace(unary_stream=self._guarded(handler.unary_stream))

    def _guarded(self, behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        slots = self.slots

        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            stream_id = slots.open(self._who(context), context)
            try:
                for message in behavior(request, context):
                    slots.sending(stream_id)
                    yield message
                    slots.sent(stream_id)
            finally:
                slots.close(stream_id)

        return call
