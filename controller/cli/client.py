"""The operator CLI's connection to the controller's admin API (TLS + bearer token)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from edgefleet.errors import (
    InvalidInput,
    Unauthenticated,
    Unavailable,
)
from edgefleet.status import error_for

T = TypeVar("T")


@dataclass(frozen=True)
class Connection:
    address: str
    token: str
    ca_pem: bytes
    timeout_s: float = 30.0


def resolve_connection(
    data_dir: Path, address: str | None, token: str | None, ca_file: Path | None
) -> Connection:
    """Flags and environment first, then the ``client.toml`` the controller wrote."""
    info: dict[str, str] = {}
    client_file = data_dir / "client.toml"
    if client_file.exists():
        info = tomllib.loads(client_file.read_text())
    address = address or info.get("address")
    if not address:
        raise Unavailable(
            f"no controller address: pass --controller or start `edgefleet controller serve` "
            f"with --data-dir {data_dir}"
        )
    if token is None and info.get("token_file"):
        token = Path(info["token_file"]).read_text().strip()
    ca_path = ca_file or (Path(info["ca_file"]) if info.get("ca_file") else None)
    if not token or ca_path is None:
        raise Unauthenticated("no operator token or CA file: pass --token and --ca-file")
    try:
        ca_pem = ca_path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read CA file {ca_path}: {exc.strerror}") from exc
    return Connection(address, token, ca_pem)


def open_channel(conn: Connection) -> grpc.Channel:
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=conn.ca_pem),
        grpc.access_token_call_credentials(conn.token),
    )
    return grpc.secure_channel(conn.address, credentials)


def call(conn: Connection, rpc: Callable[..., T], request: object) -> T:
    """One admin call with a deadline; gRPC failures become EdgeFleet errors."""
    try:
        return rpc(request, timeout=conn.timeout_s)
    except grpc.RpcError as exc:
        code = exc.code()
        details = exc.details()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            details = f"controller unreachable at {conn.address} ({details})"
        raise error_for(code)(details) from None
