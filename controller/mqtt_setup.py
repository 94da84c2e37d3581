"""The controller's MQTT side, assembled: the broker it supervises (Mosquitto by default, the
embedded loopback-only broker as the fallback) or the external one it uses, and the ingest.

Part of :func:`controller.app.build_controller`; everything started here is registered on
the caller's exit stack.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from controller.config import ControllerConfig, plan_mqtt
from controller.errors import ConfigError
from controller.mqtt.acl import CONTROLLER_USERNAME
from controller.mqtt.credentials import hash_password, write_mosquitto_auth
from controller.mqtt.ingest import (
    ControllerMqttIngest,
    DeviceAdmission,
    IngestConfig,
    TelemetrySink,
)
from controller.mqtt.mosquitto_conf import BrokerLimits, find_mosquitto
from edgefleet.mqtt import parse_broker_url

if TYPE_CHECKING:  # amqtt is imported only when the embedded broker runs
    from controller.mqtt.broker import EmbeddedBroker

log = logging.getLogger(__name__)

SINGLE_INGEST_CLIENT_ID = "edgefleet-controller-ingest"  # one controller (SQLite)
SHARED_INGEST_GROUP = "edgefleet-ingest"  # $share/edgefleet-ingest/... with mqtt_shared_ingest


def ingest_identity(config: ControllerConfig, replica_id: str) -> tuple[str, str]:
    """(client id, shared group) of this replica's ingest. A replica (``replica_id`` given)
    has a client id of its own, so two replicas never take over each other's session; the
    shared group needs a configured, stable replica id: reports the broker queued in a
    killed replica's session are delivered when it comes back under the same id."""
    if config.mqtt_shared_ingest and not config.replica_id:
        raise ConfigError(
            "mqtt_shared_ingest needs a stable replica_id per replica (e.g. the pod name)"
        )
    client_id = f"edgefleet-ingest-{replica_id}" if replica_id else SINGLE_INGEST_CLIENT_ID
    if len(client_id) > 128:
        raise ConfigError(f"replica_id is too long for an MQTT client id: {replica_id[:40]}...")
    return client_id, SHARED_INGEST_GROUP if config.mqtt_shared_ingest else ""


class DeviceCredentials(Protocol):
    """The registry's view for the broker (``controller.services.devices.DeviceRegistry``)."""

    def mqtt_password_hash(self, username: str) -> str | None: ...

    def mqtt_credentials(self) -> list[tuple[str, str]]: ...


class AuthFollower(Protocol):
    """Whatever must hear at once that a device was enrolled or revoked."""

    def credentials_changed(self) -> object: ...


@dataclass
class BrokerHandle:
    """What the rest of the controller sees of MQTT."""

    kind: str  # mosquitto | embedded | external
    device_url: str  # what devices are told to connect to
    ingest: ControllerMqttIngest
    auth: AuthFollower

    @property
    def port(self) -> int:
        """The port devices connect to."""
        return parse_broker_url(self.device_url).port

    def credentials_changed(self) -> None:
        """A device was enrolled or revoked: the broker reloads its users and drops the
        sessions of revoked ones."""
        self.auth.credentials_changed()


@dataclass
class _ExternalAuthFiles:
    """For an external Mosquitto: keep its password and ACL files in step with the registry
    and run the operator's reload command."""

    config: ControllerConfig
    controller_password: str
    registry: DeviceCredentials

    def credentials_changed(self) -> None:
        write_mosquitto_auth(
            self.config.data_dir / "mosquitto",
            self.controller_password,
            self.registry.mqtt_credentials(),
        )
        if command := self.config.mqtt_reload_command:
            try:
                subprocess.run(shlex.split(command), check=True, timeout=10, capture_output=True)
            except (OSError, subprocess.SubprocessError) as exc:
                log.error("MQTT broker reload command failed: %s", exc)


def start_broker(
    config: ControllerConfig,
    *,
    controller_password: str,
    registry: DeviceCredentials,
    sink: TelemetrySink,
    admit: DeviceAdmission,
    stack: ExitStack,
    replica_id: str = "",
) -> BrokerHandle:
    client_id, shared_group = ingest_identity(config, replica_id)
    plan = plan_mqtt(config, find_mosquitto)
    if shared_group and plan.broker == "embedded":
        raise ConfigError(
            "mqtt_shared_ingest needs Mosquitto or an external broker (the embedded one has no "
            "shared subscriptions)"
        )
    if plan.warning:
        log.warning("%s", plan.warning)
    # A broker the controller runs knows the controller by its own user name; mqtt_username
    # and mqtt_password are for an external broker.
    username, password = CONTROLLER_USERNAME, controller_password
    auth: AuthFollower
    if plan.broker == "mosquitto":
        from controller.mqtt.mosquitto import MosquittoBroker

        mosquitto = MosquittoBroker(
            config.data_dir / "mosquitto",
            host=plan.bind_host,
            port=config.mqtt_port,
            controller_password=controller_password,
            credentials=registry.mqtt_credentials,
            binary=plan.mosquitto,
            limits=BrokerLimits(
                max_packet_bytes=config.mqtt_max_packet_bytes,
                max_connections=config.mqtt_max_connections,
            ),
        )
        mosquitto.start()
        stack.callback(mosquitto.stop)
        auth, port, ingest_url = mosquitto, mosquitto.port, mosquitto.ingest_url
    elif plan.broker == "embedded":
        embedded = _start_embedded(config, plan.bind_host, controller_password, registry)
        stack.callback(embedded.stop)
        auth, port, ingest_url = embedded, embedded.port, embedded.ingest_url
    else:
        username = config.mqtt_username
        password = config.mqtt_password or controller_password
        external = _ExternalAuthFiles(config, controller_password, registry)
        external.credentials_changed()
        auth, ingest_url = external, config.mqtt
    device_url = (
        config.mqtt if plan.broker == "external" else f"mqtt://{config.advertise_host}:{port}"
    )
    ingest = ControllerMqttIngest(
        IngestConfig(
            url=ingest_url,
            username=username,
            password=password,
            client_id=client_id,
            shared_group=shared_group,
            ack_after_store=True,  # a report is acknowledged once it is stored
        ),
        sink=sink,
        admit=admit,
    )
    ingest.start()
    stack.callback(ingest.stop)
    return BrokerHandle(plan.broker, device_url, ingest, auth)


def _start_embedded(
    config: ControllerConfig, host: str, controller_password: str, registry: DeviceCredentials
) -> EmbeddedBroker:
    from controller.mqtt.broker import EmbeddedBroker

    controller_hash = hash_password(controller_password)

    def password_hash(username: str) -> str | None:
        if username == CONTROLLER_USERNAME:
            return controller_hash
        return registry.mqtt_password_hash(username)

    broker = EmbeddedBroker(
        host=host,
        port=config.mqtt_port,
        lookup_password_hash=password_hash,
        max_connections=config.mqtt_max_connections,
        max_packet_bytes=config.mqtt_max_packet_bytes,
    )
    broker.start()
    return broker
