"""Enrollment: trust the pinned controller CA, send a CSR and facts, keep the certificate and
pin the controller's TUF root (the trust anchor of every model update)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import tenacity

from agent.controller_client import CALL_BACKOFF, enrollment_channel, with_retries
from agent.errors import AgentError, ControllerUnreachable, DataDirError
from agent.identity import (
    CA_FILE,
    CERT_FILE,
    IDENTITY_FILE,
    KEY_FILE,
    Identity,
    create_key_and_csr,
    fetch_pinned_ca,
    pin_tuf_root,
    write_file,
)
from edgefleet import __version__
from edgefleet.enrollment import EnrollmentToken
from edgefleet.hardware import HardwareFacts
from edgefleet.retry import last_error, retrying
from edgefleet.v1 import common_pb2, device_pb2, device_pb2_grpc

log = logging.getLogger(__name__)


class EnrollmentRefused(AgentError):
    """The controller said no (unknown, used or expired token; bad request)."""


def _fetch_ca(
    address: str,
    pin: str,
    attempts: int,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """The pinned CA, retrying while the controller does not answer (a refused pin is final)."""
    retry = retrying(
        what="enroll",
        transient=lambda exc: isinstance(exc, ConnectionError),
        attempts=attempts,
        backoff=CALL_BACKOFF,
        logger=log,
        sleep=sleep,
    )
    try:
        return retry(fetch_pinned_ca, address, pin, timeout_s)
    except tenacity.RetryError as gave_up:
        exc = last_error(gave_up)
        raise ControllerUnreachable(
            f"controller unreachable at {address} after {attempts} attempts: {exc}"
        ) from exc


def _prepare_data_dir(data_dir: Path) -> None:
    """Make sure the identity can be saved before a single-use token is spent on it."""
    probe = data_dir / ".write-test"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        write_file(probe, b"")
        probe.unlink()
    except OSError as exc:
        raise DataDirError(
            f"cannot use {data_dir} as the agent's data directory: "
            f"{exc.strerror or exc} (pass a writable --data-dir)"
        ) from exc


def enroll(
    data_dir: Path,
    controller: str,
    token_text: str,
    facts: HardwareFacts,
    *,
    attempts: int = 5,
    timeout_s: float = 10.0,
    max_message_bytes: int = 8 * 1024 * 1024,
    sleep: Callable[[float], None] = time.sleep,
) -> Identity:
    token = EnrollmentToken.parse(token_text)
    if (data_dir / IDENTITY_FILE).exists():
        raise AgentError(f"{data_dir} is already enrolled; use another --data-dir to enroll again")
    _prepare_data_dir(data_dir)
    ca_pem = _fetch_ca(controller, token.ca_pin, attempts, timeout_s, sleep)
    key_pem, csr_pem = create_key_and_csr()
    request = device_pb2.EnrollRequest(
        token=token.credential,
        csr_pem=csr_pem,
        facts=common_pb2.HardwareFacts(**dataclasses.asdict(facts)),
        agent_version=__version__,
    )
    channel = enrollment_channel(controller, ca_pem, max_message_bytes)
    try:
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        response: device_pb2.EnrollResponse = with_retries(
            lambda: stub.Enroll(request, timeout=timeout_s),
            what="enroll",
            attempts=attempts,
            sleep=sleep,
        )
    except grpc.RpcError as exc:
        raise EnrollmentRefused(f"enrollment refused: {exc.details()}") from exc
    finally:
        channel.close()
    identity = Identity(
        device_id=response.device_id,
        controller=response.device_endpoint or controller,
        profile=response.profile,
        mqtt_url=response.mqtt.url,
        mqtt_username=response.mqtt.username,
        mqtt_password=response.mqtt.password,
        mqtt_topic_prefix=response.mqtt.topic_prefix,
    )
    # The key is written only now, so a refused enrollment leaves the directory as it was.
    try:
        write_file(data_dir / KEY_FILE, key_pem, 0o600)
        write_file(data_dir / CERT_FILE, response.certificate_pem.encode())
        write_file(data_dir / CA_FILE, response.ca_certificate_pem.encode())
        pin_tuf_root(data_dir, response.tuf_root_json)
        identity.save(data_dir)
    except OSError as exc:
        raise DataDirError(
            f"enrolled as {identity.device_id}, but saving the identity in {data_dir} failed: "
            f"{exc.strerror or exc}; the token is spent: register the device again"
        ) from exc
    log.info("enrolled as %s (profile %s)", identity.device_id, identity.profile)
    return identity
