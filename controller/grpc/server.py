"""Builds the controller's gRPC server: TLS with optional client certificates, one port."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc

from controller.errors import ListenError
from controller.grpc.auth import ADMIN_SERVICE_SUFFIX, AuthInterceptor, current_device
from controller.grpc.stream_guard import StreamGuard, StreamLimits, StreamSlots
from controller.pki import CertificateAuthority

log = logging.getLogger(__name__)

# A servicer registration: e.g. lambda server: add_DeviceServiceServicer_to_server(s, server)
Registration = Callable[[grpc.Server], None]

# The server pings every connection that is quiet this long, and closes it when the ping is
# not answered in time: a peer that stops reading (its socket full) loses its connection, and
# the workers blocked sending to it are freed.
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000


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
) -> tuple[grpc.Server, int, int]:
    """One server, two ports: TLS for enrollment and operators, mutual TLS for devices.

    (gRPC cannot ask for an optional client certificate, so devices get a port that requires
    one; the auth interceptor applies the same rules on both ports.) Device-facing server
    streams are bounded per device and in all (``stream_limits``, by default a quarter of
    the workers), so that one device cannot hold the workers heartbeats and operators need."""
    slots = StreamSlots(stream_limits or StreamLimits.for_workers(workers))
    guard = StreamGuard(slots, lambda _ctx: current_device().device_id, _is_device_facing_method)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        interceptors=[interceptor, guard],  # auth first: the guard counts per known device
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ],
        maximum_concurrent_rpcs=workers * 8,
    )
    for register in registrations:
        register(server)
    bound = []
    ports = (
        (port, False, "the TLS port for enrollment and operators (--grpc-port)"),
        (device_port, True, "the mutual-TLS port for devices (--device-port)"),
    )
    for listen_port, client_auth, what in ports:
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
    return server, bound[0], bound[1]


def _is_device_facing_method(method: str) -> bool:
    parts = method.split("/")
    return len(parts) == 3 and not parts[1].endswith(ADMIN_SERVICE_SUFFIX)
