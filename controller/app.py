"""The controller process: wires config, database, PKI, MQTT and gRPC, and shuts down cleanly."""

from __future__ import annotations

import logging
import secrets
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import ControllerConfig
from controller.errors import ConfigError
from controller.grpc.admin_servicer import DeviceAdminServicer
from controller.grpc.auth import AuthInterceptor
from controller.grpc.device_servicer import DeviceServicer
from controller.grpc.server import build_server
from controller.pki import CertificateAuthority, write_private
from controller.services.devices import DeviceRegistry, mark_stale_offline
from controller.services.offload import CloudModels, OffloadPairs
from controller.services.telemetry import TelemetryStore
from controller.store.db import Database
from edgefleet.profiles import ProfileCatalogue
from edgefleet.v1 import admin_pb2_grpc, device_pb2_grpc, telemetry_pb2

log = logging.getLogger(__name__)

PRESENCE_TIMEOUT_S = 30.0
CLIENT_FILE = "client.toml"


def load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    write_private(path, value.encode())
    return value


@dataclass(frozen=True)
class ClientInfo:
    """What an operator CLI on this machine needs to reach the controller."""

    address: str
    ca_file: Path
    token_file: Path


def write_client_file(data_dir: Path, info: ClientInfo) -> None:
    lines = [
        f'address = "{info.address}"',
        f'ca_file = "{info.ca_file}"',
        f'token_file = "{info.token_file}"',
    ]
    (data_dir / CLIENT_FILE).write_text("\n".join(lines) + "\n")


class _PresenceSink:
    """MQTT presence into the registry, telemetry into the store (on the MQTT client's thread)."""

    def __init__(self, registry: DeviceRegistry, telemetry: Any = None) -> None:
        self._registry = registry
        if telemetry is not None:
            self.device_telemetry = telemetry.submit_from

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        self._registry.record_presence(
            device_id, online=online, unix_ms=unix_ms, agent_version=agent_version
        )

    def device_heartbeat(self, device_id: str, heartbeat: telemetry_pb2.Heartbeat) -> None:
        self._registry.record_presence(device_id, online=True, unix_ms=heartbeat.unix_ms)


class Controller:
    """Start with ``start()``; ``stop()`` lets in-flight RPCs finish, then closes everything."""

    # Set in start() by controller.inference_app.start_inference:
    telemetry: TelemetryStore  # cohort_metrics(...) / device_variant(...) for rollout gates
    cloud_models: CloudModels
    offload_pairs: OffloadPairs

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.grpc_port = 0
        self.mqtt_url = ""

    def start(self) -> None:
        """Start every part in order. When one fails (a port in use, an unreachable store),
        stop what had started, so no thread, broker or database is left behind, and re-raise."""
        try:
            self._start()
        except BaseException:
            try:
                self.stop()
            except Exception as cleanup:  # the first failure is the one to report
                log.warning("stopping after a failed start: %s", cleanup)
            raise

    def _start(self) -> None:
        cfg = self.config
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            cfg.data_dir.chmod(0o700)
            probe = cfg.data_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"cannot use {cfg.data_dir} as the controller's data directory: "
                f"{exc.strerror or exc} (pass a writable --data-dir)"
            ) from exc
        self.db = Database(cfg.db_url)
        self.db.migrate()
        self.profiles = ProfileCatalogue.load(cfg.profiles_file)
        self.ca = CertificateAuthority(cfg.data_dir / "pki", server_names=(cfg.advertise_host,))
        token_file = cfg.data_dir / "operator.token"
        self.operator_token = load_or_create_secret(token_file)
        self._mqtt_controller_password = load_or_create_secret(cfg.data_dir / "mqtt.secret")

        from controller.mqtt.credentials import hash_password

        self._controller_password_hash = hash_password(self._mqtt_controller_password)

        self.registry = DeviceRegistry(
            self.db,
            self.ca,
            self.profiles,
            hash_mqtt_password=hash_password,
            on_credentials_changed=self._credentials_changed,
        )
        from controller.inference_app import register_inference, start_inference

        start_inference(self)  # sets self.telemetry, self.cloud_models, self.offload_pairs
        self._start_mqtt()
        from controller.grpc.models_servicer import add_model_services
        from controller.services.models_setup import refresh_timestamps, start_models

        self.model_parts = start_models(cfg, self.db, self.profiles)
        self.models = self.model_parts.models
        from controller.grpc.rollouts_servicer import add_rollout_services
        from controller.services.rollouts import create_rollouts

        self.rollouts = create_rollouts(self)
        self.server, self.grpc_port, self.device_port = build_server(
            self.ca,
            AuthInterceptor(self.registry, self.operator_token),
            [
                lambda s: device_pb2_grpc.add_DeviceServiceServicer_to_server(
                    DeviceServicer(self.registry, self.mqtt_url, self._device_endpoint), s
                ),
                lambda s: add_rollout_services(s, self.rollouts),
                lambda s: add_model_services(s, self.model_parts, self.profiles),
                lambda s: admin_pb2_grpc.add_DeviceAdminServiceServicer_to_server(
                    DeviceAdminServicer(self.registry, self.profiles), s
                ),
                lambda s: register_inference(self, s),
            ],
            host=cfg.grpc_host,
            port=cfg.grpc_port,
            device_port=cfg.device_port,
            workers=cfg.grpc_workers,
            max_message_bytes=cfg.max_message_bytes,
        )
        self.server.start()
        self.rollouts.start()
        write_client_file(
            cfg.data_dir,
            ClientInfo(
                f"{cfg.advertise_host}:{self.grpc_port}",
                cfg.data_dir / "pki" / "ca.pem",
                token_file,
            ),
        )
        self._spawn("presence-sweeper", self._sweep_presence)
        self._spawn(
            "tuf-timestamp", lambda: refresh_timestamps(self.model_parts.releases, self._stopped)
        )
        log.info(
            "controller listening on %s: gRPC %d (TLS), %d (devices, mutual TLS), MQTT %s",
            cfg.grpc_host,
            self.grpc_port,
            self.device_port,
            self.mqtt_url,
        )

    # -- MQTT -------------------------------------------------------------------------------
    def _start_mqtt(self) -> None:
        from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig

        cfg = self.config
        if cfg.embedded_mqtt:
            from controller.mqtt.broker import EmbeddedBroker

            local = cfg.advertise_host in {"127.0.0.1", "localhost"}
            self.broker: EmbeddedBroker | None = EmbeddedBroker(
                host="127.0.0.1" if local else "0.0.0.0",
                port=cfg.mqtt_port,
                lookup_password_hash=self._broker_password_hash,
            )
            self.broker.start()
            self.mqtt_url = f"mqtt://{cfg.advertise_host}:{self.broker.port}"
            ingest_url = f"mqtt://127.0.0.1:{self.broker.port}"
            password = self._mqtt_controller_password
        else:
            self.broker = None
            self.mqtt_url = ingest_url = cfg.mqtt
            password = cfg.mqtt_password or self._mqtt_controller_password
            self._credentials_changed()
        self.ingest = ControllerMqttIngest(
            IngestConfig(url=ingest_url, username=cfg.mqtt_username, password=password),
            sink=_PresenceSink(self.registry, getattr(self, "telemetry", None)),
        )
        self.ingest.start()

    def _device_endpoint(self) -> str:
        return f"{self.config.advertise_host}:{self.device_port}"

    def _broker_password_hash(self, username: str) -> str | None:
        if username == self.config.mqtt_username:
            return self._controller_password_hash
        return self.registry.mqtt_password_hash(username)

    def _credentials_changed(self) -> None:
        """Keep Mosquitto's password and ACL files in step with the registry."""
        if self.config.embedded_mqtt:
            return  # the embedded broker asks the registry at every connect
        from controller.mqtt.credentials import write_mosquitto_auth

        write_mosquitto_auth(
            self.config.data_dir / "mosquitto",
            self._mqtt_controller_password,
            self.registry.mqtt_credentials(),
        )
        if command := self.config.mqtt_reload_command:
            try:
                subprocess.run(shlex.split(command), check=True, timeout=10, capture_output=True)
            except (OSError, subprocess.SubprocessError) as exc:
                log.error("MQTT broker reload command failed: %s", exc)

    # -- background -------------------------------------------------------------------------
    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sweep_presence(self) -> None:
        while not self._stopped.wait(5.0):
            cutoff = int((time.time() - PRESENCE_TIMEOUT_S) * 1000)
            try:
                if n := mark_stale_offline(self.db, cutoff):
                    log.info("marked %d silent devices offline", n)
            except Exception:  # the sweeper must outlive a database hiccup
                log.exception("presence sweep failed")

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace_s
        log.info("stopping: finishing in-flight calls (up to %.0f s)", grace)
        # Whatever start() got to, in reverse order.
        if rollouts := getattr(self, "rollouts", None):
            rollouts.stop()
        if server := getattr(self, "server", None):
            server.stop(grace).wait(grace + 1)
        if ingest := getattr(self, "ingest", None):
            ingest.stop()
        if broker := getattr(self, "broker", None):
            broker.stop()
        for thread in self._threads:
            thread.join(timeout=2)
        from controller.inference_app import stop_inference

        stop_inference(self)
        if db := getattr(self, "db", None):
            db.close()
        log.info("controller stopped")

    def wait(self) -> None:
        self._stopped.wait()
