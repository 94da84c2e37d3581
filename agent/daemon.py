"""The agent's long-running loop: presence over MQTT, heartbeats over gRPC, clean exit."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.controller_client import ControllerClient, DeviceRefused, device_channel
from agent.identity import Credentials, Identity
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from edgefleet import __version__

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REFUSED = 3


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path
    heartbeat_interval_s: float = 5.0
    rpc_timeout_s: float = 5.0
    max_message_bytes: int = 8 * 1024 * 1024
    mqtt_enabled: bool = True


class AgentDaemon:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.identity = Identity.load(config.data_dir)
        self.credentials = Credentials.load(config.data_dir)
        self.stopping = threading.Event()
        self.heartbeats_ok = 0
        self.heartbeats_failed = 0

    def run(self) -> int:
        """Serve until ``stopping`` is set or the controller refuses us; returns an exit code."""
        ident = self.identity
        log.info(
            "agent %s (profile %s) connecting to %s",
            ident.device_id,
            ident.profile,
            ident.controller,
        )
        client = ControllerClient(
            device_channel(ident.controller, self.credentials, self.config.max_message_bytes),
            timeout_s=self.config.rpc_timeout_s,
        )
        mqtt = self._start_mqtt() if self.config.mqtt_enabled else None
        try:
            while not self.stopping.is_set():
                try:
                    client.heartbeat(__version__)
                    self.heartbeats_ok += 1
                except DeviceRefused as exc:
                    log.error("%s; stopping", exc)
                    return EXIT_REFUSED
                except grpc.RpcError as exc:
                    self.heartbeats_failed += 1
                    log.warning("heartbeat failed (%s); will retry", exc.code().name)
                self.stopping.wait(self.config.heartbeat_interval_s)
            return EXIT_OK
        finally:
            if mqtt is not None:
                mqtt.stop()
            client.close()

    def _start_mqtt(self) -> AgentMqttClient:
        ident = self.identity
        mqtt = AgentMqttClient(
            AgentMqttConfig(
                url=ident.mqtt_url,
                device_id=ident.device_id,
                username=ident.mqtt_username,
                password=ident.mqtt_password,
                heartbeat_interval_s=self.config.heartbeat_interval_s,
                agent_version=__version__,
            )
        )
        mqtt.start()
        return mqtt
