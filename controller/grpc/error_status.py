"""Domain errors -> gRPC status through the shared table, for servers without the auth
interceptor (which does the same mapping on the controller's own server)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from edgefleet.errors import EdgeFleetError, ResourceExhausted
from edgefleet.status import status_for

log = logging.getLogger(__name__)


MAX_DETAIL_CHARS = 1000  # of an error's text in the status and the log (gRPC: 16 KiB headers)


def short_detail(text: str) -> str:
    """``text`` cut to MAX_DETAIL_CHARS: errors quote what the caller sent, which can be
    megabytes, and a status detail beyond gRPC's header limit turns into RESOURCE_EXHAUSTED."""
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return f"{text[:MAX_DETAIL_CHARS]}... ({len(text)} characters)"


def abort_with_status(context: grpc.ServicerContext, method: str, error: EdgeFleetError) -> None:
    """End the call with the error's status code from the shared table, logged once (a rate or
    size refusal at debug level only: whoever refused it counts and logs it, bounded); the
    error's text is cut short (``short_detail``)."""
    code = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        level = logging.ERROR
    elif isinstance(error, ResourceExhausted):
        level = logging.DEBUG
    else:
        level = logging.INFO
    detail = short_detail(str(error))
    log.log(level, "%s -> %s: %s", method, code.name, detail)
    context.abort(code, detail)


class ErrorStatusInterceptor(grpc.ServerInterceptor):
    """Answers every EdgeFleetError a servicer raises with its status code from the table."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behavior(request, context)
                except EdgeFleetError as exc:
                    abort_with_status(context, method, exc)

            return call

        def streaming(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behavior(request, context)
                except EdgeFleetError as exc:
                    abort_with_status(context, method, exc)

            return call

        return rewrap(handler, unary, streaming)


Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def rewrap(handler: grpc.RpcMethodHandler, unary: Wrapper, streaming: Wrapper) -> Any:
    """``handler`` with its behaviour wrapped: ``unary`` for methods that answer once,
    ``streaming`` for methods that answer with a stream."""
    if handler.unary_unary:
        return handler._replace(unary_unary=unary(handler.unary_unary))
    if handler.stream_unary:
        return handler._replace(stream_unary=unary(handler.stream_unary))
    if handler.unary_stream:
        return handler._replace(unary_stream=streaming(handler.unary_stream))
    return handler._replace(stream_stream=streaming(handler.stream_stream))
