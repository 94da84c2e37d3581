"""Who is calling: devices by client certificate (mutual TLS), operators by bearer token.

One interceptor guards every method. ``DeviceService/Enroll`` is the only call accepted from
an unknown peer; ``*AdminService`` calls need the operator token; every other edgefleet.v1
service is device-facing and needs a certificate the registry still trusts (revocation takes
effect at the next call). Anything outside edgefleet.v1 is refused. The interceptor also maps
domain errors to status codes and logs each call, so servicers stay thin.

Calls that present a guessable credential (the operator token, an enrollment secret) pass a
``CredentialThrottle`` first: a caller address with too many wrong ones in a window is
answered RESOURCE_EXHAUSTED without its credential being looked at.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.grpc.early_refusal import refusing_handler
from controller.grpc.error_status import abort_with_status, rewrap
from controller.grpc.throttle import CredentialThrottle, caller_address
from controller.services.devices import Device, DeviceRegistry
from edgefleet.enrollment import certificate_fingerprint
from edgefleet.errors import (
    EdgeFleetError,
    PermissionDenied,
    Unauthenticated,
)

log = logging.getLogger(__name__)

PUBLIC_METHODS = frozenset({"/edgefleet.v1.DeviceService/Enroll"})
PACKAGE_PREFIX = "edgefleet.v1."
ADMIN_SERVICE_SUFFIX = "AdminService"

_current_device: contextvars.ContextVar[Device] = contextvars.ContextVar("edgefleet_device")


def current_device() -> Device:
    """The authenticated device of the call being served (device-facing methods only)."""
    try:
        return _current_device.get()
    except LookupError:
        raise Unauthenticated("no device identity on this call") from None


def peer_certificate_fingerprint(context: grpc.ServicerContext) -> str | None:
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    return certificate_fingerprint(cert.public_bytes(serialization.Encoding.DER))


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        registry: DeviceRegistry,
        operator_token: str,
        *,
        throttle: CredentialThrottle | None = None,
    ) -> None:
        self._registry = registry
        self._operator_token = operator_token.encode()
        self.throttle = throttle or CredentialThrottle()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        check = self._checker(method, metadata)
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        if service.endswith(ADMIN_SERVICE_SUFFIX) and not self._operator_token_in(metadata):
            # refused from the headers: no worker waits for the request of a call without the
            # token (a peer that never sends it would hold the worker)
            return refusing_handler(handler, method, self._refuse_operator)
        guessable = method in PUBLIC_METHODS or service.endswith(ADMIN_SERVICE_SUFFIX)
        return _wrap(handler, method, check, self.throttle if guessable else None)

    def device_of(self, context: grpc.ServicerContext) -> Device:
        """The enrolled, unrevoked device whose certificate the caller presented."""
        fingerprint = peer_certificate_fingerprint(context)
        if fingerprint is None:
            raise Unauthenticated("this call needs a device certificate (mutual TLS)")
        return self._registry.authenticate(fingerprint)

    def _operator_token_in(self, metadata: dict[str, Any]) -> bool:
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.encode(), self._operator_token
        )

    def _refuse_operator(self, context: grpc.ServicerContext) -> None:
        address = caller_address(context.peer())
        self.throttle.check(address)  # a throttled address is told so, as with the token
        self.throttle.failed(address)
        raise Unauthenticated("missing or wrong operator token")

    def _checker(
        self, method: str, metadata: dict[str, Any]
    ) -> Callable[[grpc.ServicerContext], Device | None]:
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        if method in PUBLIC_METHODS:
            return lambda _ctx: None
        if service.endswith(ADMIN_SERVICE_SUFFIX):
            supplied = str(metadata.get("authorization", ""))

            def check_operator(_ctx: grpc.ServicerContext) -> None:
                scheme, _, token = supplied.partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                    token.encode(), self._operator_token
                ):
                    raise Unauthenticated("missing or wrong operator token")
                return None

            return check_operator
        if service.startswith(PACKAGE_PREFIX):
            return self.device_of

        def refuse(_ctx: grpc.ServicerContext) -> None:
            raise PermissionDenied(f"method {method} is not exposed")

        return refuse


def _wrap(
    handler: grpc.RpcMethodHandler,
    method: str,
    check: Callable[..., Device | None],
    throttle: CredentialThrottle | None,
):
    def enter(context: grpc.ServicerContext) -> contextvars.Token[Device] | None:
        if throttle is not None:
            throttle.check(caller_address(context.peer()))
        try:
            device = check(context)
        except Unauthenticated:
            failed(context)
            raise
        return _current_device.set(device) if device is not None else None

    def failed(context: grpc.ServicerContext) -> None:
        if throttle is not None:
            throttle.failed(caller_address(context.peer()))

    def leave(token: contextvars.Token[Device] | None, started: float) -> None:
        if token is not None:
            _current_device.reset(token)
        log.debug("%s served in %.1f ms", method, (time.perf_counter() - started) * 1000)

    def unary(behavior):
        def call(request, context):
            started, token = time.perf_counter(), None
            try:
                token = enter(context)
                try:
                    return behavior(request, context)
                except Unauthenticated:
                    failed(context)  # e.g. a wrong enrollment secret
                    raise
            except EdgeFleetError as exc:
                abort_with_status(context, method, exc)
            finally:
                leave(token, started)

        return call

    def streaming(behavior):
        def call(request, context) -> Iterator[Any]:
            started, token = time.perf_counter(), None
            try:
                token = enter(context)
                yield from behavior(request, context)
            except EdgeFleetError as exc:
                abort_with_status(context, method, exc)
            finally:
                leave(token, started)

        return call

    return rewrap(handler, unary, streaming)
