"""The controller's MQTT side, assembled: the broker it runs (or the external one it uses),
the files that broker authenticates from, and the ingest client.

Part of :func:`controller.app.build_controller`; everything started here is registered on
the caller's exit stack.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

from controller.config import ControllerConfig
from controller.mqtt.credentials import hash_password, write_mosquitto_auth
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig, TelemetrySink

log = logging.getLogger(__name__)


class DeviceCredentials(Protocol):
    """The registry's view for the broker (``controller.services.devices.DeviceRegistry``)."""

    def mqtt_password_hash(self, username: str) -> str | None: ...

    def mqtt_credentials(self) -> list[tuple[str, str]]: ...


class RunningBroker(Protocol):
    """A broker process or thread this controller started and stops."""

    @property
    def port(self) -> int: ...

    def stop(self, timeout: float = 10.0) -> None: ...


@dataclass
class BrokerHandle:
    """What the rest of the controller sees of MQTT."""

    device_url: str  # what devices are told to connect to
    ingest: ControllerMqttIngest
    broker: RunningBroker | None  # None: an external broker
    external_auth: _ExternalAuthFiles | None = None

    def credentials_changed(self) -> None:
        """A device was enrolled or revoked: the broker must know at once."""
        if self.external_auth is not None:
            self.external_auth.write()


@dataclass
class _ExternalAuthFiles:
    """For an external Mosquitto: keep its password and ACL files in step with the registry
    and run the operator's reload command."""

    config: ControllerConfig
    controller_password: str
    registry: DeviceCredentials

    def write(self) -> None:
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
    stack: ExitStack,
) -> BrokerHandle:
    broker: RunningBroker | None = None
    external: _ExternalAuthFiles | None = None
    password = controller_password
    if config.embedded_mqtt:
        broker = _start_embedded(config, controller_password, registry)
        stack.callback(broker.stop)
        device_url = f"mqtt://{config.advertise_host}:{broker.port}"
        ingest_url = f"mqtt://127.0.0.1:{broker.port}"
    else:
        device_url = ingest_url = config.mqtt
        password = config.mqtt_password or controller_password
        external = _ExternalAuthFiles(config, controller_password, registry)
        external.write()
    ingest = ControllerMqttIngest(
        IngestConfig(url=ingest_url, username=config.mqtt_username, password=password),
        sink=sink,
    )
    ingest.start()
    stack.callback(ingest.stop)
    return BrokerHandle(device_url, ingest, broker, external)


def _start_embedded(
    config: ControllerConfig, controller_password: str, registry: DeviceCredentials
) -> RunningBroker:
    from controller.mqtt.broker import EmbeddedBroker

    controller_hash = hash_password(controller_password)

    def password_hash(username: str) -> str | None:
        if username == config.mqtt_username:
            return controller_hash
        return registry.mqtt_password_hash(username)

    local = config.advertise_host in {"127.0.0.1", "localhost"}
    broker = EmbeddedBroker(
        host="127.0.0.1" if local else "0.0.0.0",
        port=config.mqtt_port,
        lookup_password_hash=password_hash,
    )
    broker.start()
    return broker
