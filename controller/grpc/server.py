"""Builds the controller's gRPC servers: TLS for enrollment and operators, mutual TLS for
devices, each port with its own workers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc

from controller.errors import ListenError
from controller.grpc.auth import (
    ADMIN_SERVICE_SUFFIX,
    PUBLIC_METHODS,
    AuthInterceptor,
    current_device,
)
from controller.grpc.early_refusal import InFlightBound, PortGate
from controller.grpc.request_guard import ReadLimits, RequestGuard
from controller.grpc.stream_guard import StreamGuard, StreamLimits, StreamSlots
from controller.pki import CertificateAuthority
from edgefleet.errors import EdgeFleetError, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

# A servicer registration: e.g. lambda server: add_DeviceServiceServicer_to_server(s, server)
Registration = Callable[[grpc.Server], None]

# The server pings every connection that is quiet this long, and closes it when the ping is
# not answered in time: a peer that stops reading (its socket full) loses its connection, and
# the workers blocked sending to it are freed.
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000


ENROLLMENT_WORKERS = 8  # threads of their own for enrollment calls (2 per caller address)
ENROLLMENTS_IN_FLIGHT = 16  # enrollment calls at once; more answer RESOURCE_EXHAUSTED


class ControllerServer:
    """The controller's two gRPC servers, started and stopped together: the operators' TLS port
    (enrollment and the admin API) and the devices' mutual-TLS port, each with its own workers,
    so that calls on one port (a peer stalling calls on the public one) never take the other's.
    """

    def __init__(
        self,
        operators: grpc.Server,
        devices: grpc.Server,
        pools: Sequence[futures.ThreadPoolExecutor] = (),
    ) -> None:
        self._servers = (operators, devices)
        self._pools = tuple(pools)  # the servers' worker pools, ended once both have stopped

    def start(self) -> None:
        for server in self._servers:
            server.start()

    def stop(self, grace: float | None) -> _Stopped:
        return _Stopped([server.stop(grace) for server in self._servers], self._pools)


class _Stopped:
    """``wait`` like grpc.Server.stop's event, for both servers; their pools' idle threads end
    once both have stopped."""

    def __init__(
        self, events: list[threading.Event], pools: Sequence[futures.ThreadPoolExecutor]
    ) -> None:
        self._events = events
        self._pools = pools

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._events:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not event.wait(left):
                return False
        for pool in self._pools:
            pool.shutdown(wait=False)
        return True


def build_server(
    ca: CertificateAuthority,
    interceptor: AuthInterceptor,
    registrations: Sequence[Registration],
    *,
    host: str,
    port: int,
    device_port: int,
    workers: int,
    max_message_bytes: int,
    stream_limits: StreamLimits | None = None,
    read_timeout_s: float = 10.0,
) -> tuple[ControllerServer, int, int]:
    """Two servers: TLS for enrollment and operators on ``port``, mutual TLS for devices on
    ``device_port`` (gRPC cannot ask for an optional client certificate). Each serves only its
    own methods and refuses the others from their headers; the auth interceptor applies the
    same rules on both. Device-facing server streams are bounded per device and in all
    (``stream_limits``, by default a quarter of the workers), so that one device cannot hold
    the workers heartbeats need; enrollment, the one call anyone may make, runs on threads of
    its own, a bounded number at once. A call whose request has not come within
    ``read_timeout_s`` is cancelled."""
    slots = StreamSlots(stream_limits or StreamLimits.for_workers(workers))
    guard = StreamGuard(slots, lambda _ctx: current_device().device_id, _is_device_facing_method)
    pools = [
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-operators"),
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-devices"),
        futures.ThreadPoolExecutor(ENROLLMENT_WORKERS, thread_name_prefix="grpc-enroll"),
    ]
    operators = _server(
        pools[0],
        [
            PortGate(_is_operator_method, _needs_certificate),
            InFlightBound(
                PUBLIC_METHODS, ENROLLMENTS_IN_FLIGHT, pools[2], read_timeout_s=read_timeout_s
            ),
            interceptor,
        ],
        max_message_bytes,
        workers,
    )
    devices = _server(
        pools[1],
        [
            PortGate(_is_device_facing_method, _not_for_devices),
            RequestGuard(
                _device_id_by(interceptor),
                _is_device_facing_method,
                ReadLimits(read_timeout_s=read_timeout_s),
            ),
            interceptor,
            guard,  # after auth: the guard counts per known device
        ],
        max_message_bytes,
        workers,
    )
    bound = []
    ports = (
        (operators, port, False, "the TLS port for enrollment and operators (--grpc-port)"),
        (devices, device_port, True, "the mutual-TLS port for devices (--device-port)"),
    )
    for server, listen_port, client_auth, what in ports:
        for register in registrations:
            register(server)
        credentials = grpc.ssl_server_credentials(
            [(ca.server_key_pem, ca.server_cert_pem)],
            root_certificates=ca.certificate_pem.encode(),
            require_client_auth=client_auth,
        )
        failed = f"cannot listen on {host}:{listen_port}, {what}: in use or not permitted"
        try:  # grpc raises RuntimeError on a failed bind (older versions returned 0)
            actual = server.add_secure_port(f"{host}:{listen_port}", credentials)
        except RuntimeError as exc:
            raise ListenError(failed) from exc
        if actual == 0:
            raise ListenError(failed)
        bound.append(actual)
    return ControllerServer(operators, devices, pools), bound[0], bound[1]


def _server(
    pool: futures.ThreadPoolExecutor,
    interceptors: list[grpc.ServerInterceptor],
    max_message_bytes: int,
    workers: int,
) -> grpc.Server:
    return grpc.server(
        pool,
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ],
        maximum_concurrent_rpcs=workers * 8,
    )


def _device_id_by(interceptor: AuthInterceptor) -> Callable[[grpc.ServicerContext], str]:
    return lambda context: interceptor.device_of(context).device_id


def _needs_certificate(method: str) -> EdgeFleetError:
    return Unauthenticated(f"{method} needs a device certificate (the mutual-TLS port)")


def _not_for_devices(method: str) -> EdgeFleetError:
    return PermissionDenied(f"{method} is served on the TLS port for enrollment and operators")


def _is_operator_method(method: str) -> bool:
    parts = method.split("/")
    return method in PUBLIC_METHODS or (len(parts) == 3 and parts[1].endswith(ADMIN_SERVICE_SUFFIX))


def _is_device_facing_method(method: str) -> bool:
    parts = method.split("/")
    return (
        len(parts) == 3
        and not parts[1].endswith(ADMIN_SERVICE_SUFFIX)
        and method not in PUBLIC_METHODS
    )
