"""Builds the controller's gRPC server: TLS with optional client certificates, one port."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc

from controller.errors import ListenError
from controller.grpc.auth import AuthInterceptor
from controller.pki import CertificateAuthority

log = logging.getLogger(__name__)

# A servicer registration: e.g. lambda server: add_DeviceServiceServicer_to_server(s, server)
Registration = Callable[[grpc.Server], None]


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
) -> tuple[grpc.Server, int, int]:
    """One server, two ports: TLS for enrollment and operators, mutual TLS for devices.

    (gRPC cannot ask for an optional client certificate, so devices get a port that requires
    one; the auth interceptor applies the same rules on both ports.)"""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        interceptors=[interceptor],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
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
