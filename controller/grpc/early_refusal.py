"""Refusals decided from a call's method and headers, before a worker waits for its request.

gRPC's threaded server reads a unary call's request inside a worker thread, before any handler
(authentication included) runs: a peer that opens calls and never sends their request holds
one worker per call for as long as it keeps the connection. So whatever can be refused without
the request is refused here, with a handler that never reads it:

- ``PortGate``: a method the port does not serve (device methods on the operators' TLS port,
  operator methods and enrollment on the devices' mutual-TLS port);
- ``refusing_handler`` (used by the auth interceptor): an operator call without the token;
- ``InFlightBound``: public calls (enrollment) beyond a bound, with their own small thread pool,
  so stalled enrollments can hold only enrollment's workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from concurrent import futures
from typing import Any

import grpc

from controller.grpc.error_status import abort_with_status
from controller.grpc.throttle import caller_address
from edgefleet.errors import EdgeFleetError, InvalidInput, ResourceExhausted

Continuation = Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None]
Refusal = Callable[[grpc.ServicerContext], None]  # raises the EdgeFleetError to answer


def refusing_handler(
    handler: grpc.RpcMethodHandler, method: str, refuse: Refusal
) -> grpc.RpcMethodHandler:
    """A handler answering ``refuse``'s error at once. It takes the request as a stream, which
    gRPC hands over without waiting for a message, and never reads it."""

    def answer(_requests: Iterator[Any], context: grpc.ServicerContext) -> None:
        try:
            refuse(context)
        except EdgeFleetError as exc:
            abort_with_status(context, method, exc)
        raise AssertionError("a refusal must raise")  # pragma: no cover

    def answer_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        answer(requests, context)
        yield from ()  # pragma: no cover

    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(answer_stream, **codec)
    return grpc.stream_unary_rpc_method_handler(answer, **codec)


class PortGate(grpc.ServerInterceptor):
    """Serves only the methods ``serves(method)`` admits on this port; answers the others with
    ``refusal(method)`` (an EdgeFleetError naming the port to use) without reading them."""

    def __init__(
        self, serves: Callable[[str], bool], refusal: Callable[[str], EdgeFleetError]
    ) -> None:
        self._serves = serves
        self._refusal = refusal

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or self._serves(method):
            return handler

        def refuse(_context: grpc.ServicerContext) -> None:
            raise self._refusal(method)

        return refusing_handler(handler, method, refuse)


def read_request(
    method: str, requests: Iterator[Any], context: grpc.ServicerContext, timeout_s: float
) -> Any:
    """The one request of a call whose handler takes it as a stream; the call is cancelled
    (and answered INVALID_ARGUMENT) when it has not come within ``timeout_s``."""
    timed_out = threading.Event()

    def cancel() -> None:
        timed_out.set()
        context.cancel()

    timer = threading.Timer(timeout_s, cancel)
    timer.daemon = True
    timer.start()
    try:
        request = next(requests, None)
    except grpc.RpcError:
        request = None
    finally:
        timer.cancel()
    if timed_out.is_set():
        abort_with_status(context, method, RequestTimeout(f"no request within {timeout_s:.0f} s"))
    if request is None:
        abort_with_status(context, method, InvalidInput(f"{method} needs a request"))
    return request


class RequestTimeout(InvalidInput):
    """A call's request did not arrive in time (the call is cancelled)."""


class InFlightBound(grpc.ServerInterceptor):
    """At most ``limit`` calls of ``methods`` (unary) at once, ``per_caller`` of them from one
    address, run on their own ``pool``, each cancelled when its request has not come within
    ``read_timeout_s``; more are answered RESOURCE_EXHAUSTED at once. For unary-request methods
    that anyone may call (enrollment): however many such calls a peer stalls, the other methods
    keep their workers, and callers from other addresses keep most of these.

    The bounded call takes its request as a stream and reads the one message itself, so the
    slot is given back however the call ends (even cancelled before a worker picked it up)."""

    def __init__(
        self,
        methods: Collection[str],
        limit: int,
        pool: futures.ThreadPoolExecutor,
        *,
        per_caller: int = 2,
        read_timeout_s: float = 10.0,
    ) -> None:
        self._methods = frozenset(methods)
        self._slots = threading.BoundedSemaphore(limit)
        self._limit = limit
        self._pool = pool
        self._per_caller = per_caller
        self._read_timeout_s = read_timeout_s
        self._callers: dict[str, int] = {}
        self._lock = threading.Lock()

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self._methods or not handler.unary_unary:
            return handler
        if not self._slots.acquire(blocking=False):
            limit = self._limit

            def refuse(_context: grpc.ServicerContext) -> None:
                raise ResourceExhausted(f"{limit} calls of {method} in progress: retry later")

            return refusing_handler(handler, method, refuse)
        return self._bounded(handler, method)

    def _bounded(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        behavior, slots = handler.unary_unary, self._slots

        def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            caller = ""
            try:
                caller = self._enter(method, context)
                request = read_request(method, requests, context, self._read_timeout_s)
                return behavior(request, context)
            finally:
                self._leave(caller)
                slots.release()

        call.experimental_thread_pool = self._pool  # type: ignore[attr-defined]
        return grpc.stream_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _enter(self, method: str, context: grpc.ServicerContext) -> str:
        caller = caller_address(context.peer())
        with self._lock:
            calls = self._callers.get(caller, 0)
            if calls < self._per_caller:
                self._callers[caller] = calls + 1
                return caller
        abort_with_status(
            context,
            method,
            ResourceExhausted(f"{calls} calls of {method} from {caller} in progress: retry later"),
        )
        raise AssertionError("abort raises")  # pragma: no cover

    def _leave(self, caller: str) -> None:
        if not caller:
            return
        with self._lock:
            left = self._callers.get(caller, 1) - 1
            if left > 0:
                self._callers[caller] = left
            else:
                self._callers.pop(caller, None)
