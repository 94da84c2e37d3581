"""The controller process: one typed assembly, ``build_controller(config)``.

It constructs every part from the config in order — data directory, database, PKI and
secrets, device registry, telemetry store, model registry, cloud models, MQTT broker and
ingest, rollouts, the gRPC server, background loops — each started as it is built and
registered on one exit stack, so ``Controller.stop()`` (or a failure part-way through a start)
stops exactly what was started, in reverse order. Parts get their collaborators as typed
constructor arguments; nothing is filled in afterwards.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from controller.config import ControllerConfig
from controller.errors import ConfigError
from controller.grpc.admin_servicer import DeviceAdminServicer
from controller.grpc.auth import AuthInterceptor, current_device
from controller.grpc.device_servicer import DeviceServicer
from controller.grpc.monitoring_servicer import MonitoringFleetServicer
from controller.grpc.server import build_server
from controller.grpc.stream_guard import StreamLimits
from controller.http.metrics import LatencyHistograms
from controller.http.windows import DeviceWindows
from controller.monitoring.assembly import MonitoringLogs, offload_budgets, open_logs, start_monitor
from controller.monitoring.monitor import FleetMonitor
from controller.monitoring.offload_budget import OffloadBudgets
from controller.mqtt.coalesce import CoalescedAction
from controller.mqtt.ingest import ControllerMqttIngest
from controller.mqtt_setup import BrokerHandle, start_broker
from controller.pki import CertificateAuthority, write_private
from controller.services.audit_rates import AuditBudget, AuditRates
from controller.services.audit_rates import plan_once as plan_audits_once
from controller.services.devices import DeviceRegistry, mark_stale_offline
from controller.services.fleet import DEFAULT_WINDOW_S, fleet_status
from controller.services.hard_examples import HardExamples
from controller.services.leadership import (
    Leadership,
    SoleLeader,
    default_replica_id,
    open_leadership,
)
from controller.services.model_training import TrainingRunner
from controller.services.models import ModelCatalogue
from controller.services.models_setup import ModelComponents, refresh_timestamps, start_models
from controller.services.offload import (
    BatchingConfig,
    CloudModels,
    LabelledPair,
    OffloadPairs,
    parse_cloud_model_spec,
)
from controller.services.rollouts import RolloutConfig, RolloutService
from controller.services.telemetry import TelemetryStore, TelemetryStoreConfig
from controller.services.telemetry_math import ReportSample
from controller.serving.cloud_model import Predictor
from controller.store.db import Database
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.profiles import ProfileCatalogue
from edgefleet.v1 import telemetry_pb2

log = logging.getLogger(__name__)

PRESENCE_TIMEOUT_S = 30.0
UNKNOWN_RETRY_S = 5.0  # a device not enrolled is looked up again after this long
ADMISSION_REFRESH_S = 10.0  # replicas re-read who is enrolled (revoked on another replica)
CLIENT_FILE = "client.toml"
PRESIGNED_DOWNLOADS = 200  # default concurrent rollout downloads over presigned URLs
DB_POOL_BACKGROUND = 8  # database connections for the loops besides the gRPC workers


def load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    write_private(path, value.encode())
    return value


def read_shared_secret(secrets_dir: Path, name: str) -> str:
    """A secret every replica shares, from the read-only secrets directory (never created)."""
    path = secrets_dir / name
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"secrets_dir: cannot read {path}: {exc.strerror or exc}") from exc
    if not value:
        raise ConfigError(f"secrets_dir: {path} is empty")
    return value


def controller_secret(cfg: ControllerConfig, name: str) -> str:
    """``name`` from secrets_dir when configured, else from data_dir (created there once)."""
    if cfg.secrets_dir is not None:
        return read_shared_secret(cfg.secrets_dir, name)
    return load_or_create_secret(cfg.data_dir / name)


@dataclass(frozen=True)
class ClientInfo:
    """What an operator CLI on this machine needs to reach the controller."""

    address: str
    ca_file: Path
    token_file: Path


def write_client_file(data_dir: Path, info: ClientInfo) -> bool:
    """Write client.toml atomically (temp file, rename) and only when its content changes, so
    a replica sharing the directory never leaves it half written. True when it was written."""
    lines = [
        f'address = "{info.address}"',
        f'ca_file = "{info.ca_file}"',
        f'token_file = "{info.token_file}"',
    ]
    text = "\n".join(lines) + "\n"
    path = data_dir / CLIENT_FILE
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f"{CLIENT_FILE}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def batching_defaults(cfg: ControllerConfig) -> BatchingConfig:
    return BatchingConfig(
        max_batch_size=cfg.offload_max_batch_size,
        max_queue_delay_ms=cfg.offload_max_queue_delay_ms,
        max_queue_size=cfg.offload_max_queue_size,
    )


class DeviceMessages:
    """Validated MQTT messages into the registry and the telemetry store (on paho's thread).

    ``admit`` (the ingest asks it for every message, from memory) hears only enrolled devices:
    a revoked device's presence and telemetry are dropped and counted by the ingest, never
    stored or fed to rollout gates, even while its broker session outlives the revocation."""

    def __init__(self, registry: DeviceRegistry, telemetry: TelemetryStore) -> None:
        self._registry = registry
        self._telemetry = telemetry
        self._admitted: frozenset[str] = frozenset()
        self._unknown: dict[str, float] = {}  # device -> when to ask the database again
        # told of every stored report after the store (e.g. the /metrics latency histograms)
        self.telemetry_listeners: list[Callable[[ReportSample], None]] = []
        self.refresh()

    def refresh(self) -> None:
        """Re-read who is enrolled (a device was enrolled or revoked)."""
        self._admitted = frozenset(device_id for device_id, _ in self._registry.mqtt_credentials())

    def admit(self, device_id: str) -> bool:
        return device_id in self._admitted or self._enrolled_elsewhere(device_id)

    def _enrolled_elsewhere(self, device_id: str) -> bool:
        """A device enrolled through another replica: one indexed lookup, then remembered. A
        device still unknown is not looked up again for UNKNOWN_RETRY_S (a bounded table)."""
        now = time.monotonic()
        if self._unknown.get(device_id, 0.0) > now:
            return False
        if self._registry.mqtt_password_hash(device_id) is not None:
            self._admitted = self._admitted | {device_id}
            return True
        if len(self._unknown) >= 10_000:
            self._unknown.clear()
        self._unknown[device_id] = now + UNKNOWN_RETRY_S
        return False

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        self._registry.record_presence(
            device_id, online=online, unix_ms=unix_ms, agent_version=agent_version
        )

    def device_heartbeat(self, device_id: str, heartbeat: telemetry_pb2.Heartbeat) -> None:
        self._registry.record_presence(device_id, online=True, unix_ms=heartbeat.unix_ms)

    def device_telemetry(
        self, device_id: str, sample: ReportSample, on_stored: Callable[[], None] | None = None
    ) -> None:
        """``on_stored`` (the ingest's MQTT acknowledgement) runs once the report committed."""
        self._telemetry.submit_from(device_id, sample, on_stored)
        for listener in self.telemetry_listeners:
            try:
                listener(sample)
            except Exception:  # a listener must not cost the ingest its report
                log.exception("telemetry listener failed for device=%s", device_id)


class Controller:
    """A running controller: every part, typed. Made only by :func:`build_controller`."""

    def __init__(self, config: ControllerConfig, stack: ExitStack) -> None:
        self.config = config
        self._stack = stack
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        # Assigned by build_controller in construction order.
        self.db: Database
        # singleton loops run only while it leads (SoleLeader on SQLite: always)
        self.leader: Leadership | SoleLeader
        self.profiles: ProfileCatalogue
        self.ca: CertificateAuthority
        self.operator_token: str
        self.registry: DeviceRegistry
        self.telemetry: TelemetryStore
        self.model_parts: ModelComponents
        self.models: ModelCatalogue
        self.training: TrainingRunner  # distillation (torch imported when a run starts)
        self.cloud_models: CloudModels
        self.offload_pairs: OffloadPairs
        self.hard_examples: HardExamples  # opt-in per model (controller.services.hard_examples)
        self.broker: BrokerHandle
        self.ingest: ControllerMqttIngest
        self.device_messages: DeviceMessages
        self.rollouts: RolloutService
        self.monitoring: MonitoringLogs  # event log and alerts (controller.monitoring)
        self.offload_budgets: OffloadBudgets  # drift-aware offload, in desired states
        self.audit_rates: AuditRates  # adaptive audit fraction, in desired states
        self.monitor: FleetMonitor  # drift scores, alert rules, budgets: the evaluation loop
        self.grpc_port = 0
        self.device_port = 0
        self.http_port = 0  # /metrics and the dashboard (controller.http)
        self.http_url = ""

    @property
    def mqtt_url(self) -> str:
        return self.broker.device_url

    @property
    def stopped(self) -> threading.Event:
        return self._stopped

    def stop(self) -> None:
        """Let in-flight RPCs finish, then stop every part in reverse order. Idempotent."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            log.info(
                "stopping: finishing in-flight calls (up to %.0f s)", self.config.shutdown_grace_s
            )
            self._stack.close()
            log.info("controller stopped")

    def wait(self) -> None:
        self._stopped.wait()


def build_controller(config: ControllerConfig) -> Controller:
    """Construct and start every part in order. When one fails (a port in use, an unreachable
    store) what had started is stopped, so no thread, broker or database is left behind, and
    the error propagates."""
    stack = ExitStack()
    controller = Controller(config, stack)
    try:
        _assemble(controller, stack)
    except BaseException:
        try:
            controller.stop()
        except Exception as cleanup:  # the first failure is the one to report
            log.warning("stopping after a failed start: %s", cleanup)
        raise
    return controller


def _assemble(c: Controller, stack: ExitStack) -> None:
    cfg = c.config
    _open_data_dir(cfg.data_dir)
    c.db = Database(cfg.db_url, pool_size=cfg.db_pool_size or cfg.grpc_workers + DB_POOL_BACKGROUND)
    stack.callback(c.db.close)
    c.db.migrate()  # under an advisory lock on PostgreSQL: replicas upgrade one at a time
    replica_id = cfg.replica_id or default_replica_id()
    c.leader = open_leadership(c.db, replica_id, cfg.leader_lease_s)
    if isinstance(c.leader, Leadership):
        stack.callback(c.leader.stop)  # closed late: the singleton loops stop first
    leads = lambda: c.leader.is_leader  # noqa: E731
    c.profiles = ProfileCatalogue.load(cfg.profiles_file)
    shared_ca = cfg.secrets_dir / "pki" if cfg.secrets_dir is not None else None
    try:
        c.ca = CertificateAuthority(
            cfg.data_dir / "pki", server_names=(cfg.advertise_host,), ca_directory=shared_ca
        )
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from exc
    token_file = (cfg.secrets_dir or cfg.data_dir) / "operator.token"
    c.operator_token = controller_secret(cfg, "operator.token")
    mqtt_password = controller_secret(cfg, "mqtt.secret")

    from controller.mqtt.credentials import hash_password

    credentials_listeners: list[Callable[[], None]] = []
    c.registry = DeviceRegistry(
        c.db,
        c.ca,
        c.profiles,
        hash_mqtt_password=hash_password,
        on_credentials_changed=lambda: _notify(credentials_listeners),
        presence_flush_s=cfg.presence_flush_s,
        auth_cache_ttl_s=cfg.device_cache_ttl_s,
    )
    c.monitoring = open_logs(c.db)
    c.registry.listeners.append(c.monitoring.events.record)
    c.telemetry = TelemetryStore(
        c.db,
        TelemetryStoreConfig(
            raw_retention_s=cfg.telemetry_raw_retention_s,
            rollup_retention_s=cfg.telemetry_rollup_retention_s,
        ),
    )
    c.telemetry.prune_gate = leads  # rollups and retention: one replica
    c.telemetry.start()
    stack.callback(c.telemetry.stop)

    c.model_parts = start_models(cfg, c.db, c.profiles)
    c.models = c.model_parts.models
    c.model_parts.builds.listeners.append(c.monitoring.events.record)
    c.training = TrainingRunner(c.models, cfg.data_dir / "work" / "training")
    defaults = batching_defaults(cfg)
    specs = [parse_cloud_model_spec(text, defaults) for text in cfg.cloud_models]
    c.cloud_models = CloudModels(specs, defaults, registry=lambda: c.models)
    stack.callback(c.cloud_models.close)
    c.cloud_models.preload()
    c.offload_pairs = OffloadPairs()
    c.hard_examples = HardExamples(
        c.db, c.model_parts.store, _device_labels(c.registry), cfg.hard_examples_max_bytes
    )
    c.registry.listeners.append(c.hard_examples.device_changed)  # relabelled: re-read
    c.hard_examples.start()
    stack.callback(c.hard_examples.stop)

    c.device_messages = DeviceMessages(c.registry, c.telemetry)
    credentials_followers: list[Callable[[], None]] = [c.device_messages.refresh]
    # both read every enrolled device: once per mqtt_reload_interval_s for a burst of changes
    credentials_listeners.append(
        CoalescedAction(
            lambda: _notify(credentials_followers),
            interval_s=cfg.mqtt_reload_interval_s,
            name="mqtt-credentials",
        )
    )
    c.broker = start_broker(
        cfg,
        controller_password=mqtt_password,
        registry=c.registry,
        sink=c.device_messages,
        admit=c.device_messages.admit,
        stack=stack,
        replica_id=_ingest_name(cfg, c.leader),
    )
    c.ingest = c.broker.ingest
    c.telemetry.write_failed_listeners.append(c.ingest.redeliver)
    credentials_followers.append(c.broker.credentials_changed)

    c.offload_budgets = offload_budgets(cfg, c.broker.ingest, c.monitoring)
    c.audit_rates = AuditRates(
        c.offload_budgets,
        AuditBudget(
            cfg.audit_target_half_width, cfg.audit_max_device_fps, cfg.audit_max_fleet_fps,
            float(DEFAULT_WINDOW_S),
        ),
    )  # fmt: skip
    c.rollouts = RolloutService(
        c.db,
        c.registry.rollout_targets,  # the columns a step reads, enrolled ones only
        c.models,
        metrics=c.telemetry,
        # adds each device's audit fraction, then its drift-aware offload budget
        publisher=c.audit_rates,
        config=RolloutConfig(
            tick_interval_s=cfg.rollout_tick_s, default_max_downloads=rollout_download_default(cfg)
        ),
        device_variant=c.telemetry.device_variant,
        leader=c.leader,
    )
    c.rollouts.listeners.append(c.monitoring.events.record)
    _start_grpc(c, stack)
    c.rollouts.start()
    stack.callback(c.rollouts.stop)
    c.monitor = start_monitor(
        cfg, stack, db=c.db, logs=c.monitoring, devices=c.registry.list_devices,
        telemetry=c.telemetry, rollouts=c.rollouts.rollouts, budgets=c.offload_budgets,
    )  # fmt: skip
    c.monitor.active = leads
    _start_http(c, stack, controller_secret(cfg, "http.secret"))

    write_client_file(
        cfg.data_dir,
        ClientInfo(
            f"{cfg.advertise_host}:{c.grpc_port}", cfg.data_dir / "pki" / "ca.pem", token_file
        ),
    )
    threads: list[threading.Thread] = []
    stack.callback(_join, threads)
    _spawn(threads, "presence-sweeper", lambda: _sweep_presence(c.db, c.stopped, leads))
    if cfg.presence_flush_s > 0:
        _spawn(threads, "presence-flusher", lambda: c.registry.run_presence_flusher(c.stopped))
    _spawn(threads, "audit-planner", lambda: _plan_audits(c, cfg.audit_plan_interval_s))
    if isinstance(c.leader, Leadership):  # enrollments and revocations of other replicas
        _spawn(threads, "admission-refresh", lambda: _refresh_admission(c))
    releases = c.model_parts.releases
    _spawn(threads, "tuf-timestamp", lambda: refresh_timestamps(releases, c.stopped, leads))
    log.info(
        "controller listening on %s: gRPC %d (TLS), %d (devices, mutual TLS), MQTT %s, HTTP %s",
        cfg.grpc_host,
        c.grpc_port,
        c.device_port,
        c.mqtt_url,
        c.http_url,
    )


def _start_grpc(c: Controller, stack: ExitStack) -> None:
    from controller.grpc.hard_examples_servicer import FleetLoop
    from controller.grpc.models_servicer import add_model_services
    from controller.grpc.offload_servicer import OffloadServicer, offload_stream_limits
    from controller.grpc.rollouts_servicer import add_rollout_services
    from controller.services.model_retrain import Retrainer
    from edgefleet.v1 import admin_pb2_grpc, device_pb2_grpc, fleet_pb2_grpc, inference_pb2_grpc

    cfg = c.config

    def device_id(_context: object = None) -> str:
        return current_device().device_id

    offload_models: Mapping[str, Predictor] = c.cloud_models
    device_servicer = DeviceServicer(
        c.registry,
        c.mqtt_url,
        lambda: f"{cfg.advertise_host}:{c.device_port}",
        c.model_parts.releases.trusted_root,  # pinned by devices at enrollment
    )
    server, c.grpc_port, c.device_port = build_server(
        c.ca,
        AuthInterceptor(c.registry, c.operator_token),
        [
            lambda s: device_pb2_grpc.add_DeviceServiceServicer_to_server(device_servicer, s),
            lambda s: add_rollout_services(s, c.rollouts, c.offload_budgets.budget),
            lambda s: add_model_services(
                s,
                c.model_parts,
                c.profiles,
                c.cloud_models.plan_for,
                training=c.training,
                fleet_loop=FleetLoop(
                    c.hard_examples,
                    Retrainer(c.models, c.hard_examples, lambda: c.training),
                    c.registry,
                ),
            ),
            lambda s: admin_pb2_grpc.add_DeviceAdminServiceServicer_to_server(
                DeviceAdminServicer(c.registry, c.profiles), s
            ),
            lambda s: inference_pb2_grpc.add_OffloadServiceServicer_to_server(
                OffloadServicer(
                    offload_models,
                    identify=device_id,
                    on_pair=_fan_out(c.offload_pairs.record, c.telemetry.accuracy.labels.record),
                    stream_limits=offload_stream_limits(cfg.grpc_workers),
                    on_frame=c.hard_examples.offer,
                ),
                s,
            ),
            lambda s: fleet_pb2_grpc.add_FleetAdminServiceServicer_to_server(
                MonitoringFleetServicer(
                    c.registry,
                    c.telemetry,
                    c.offload_pairs,
                    alerts=c.monitoring.alerts,
                    events=c.monitoring.events,
                    labels=c.telemetry.accuracy.labels,
                    audit_rates=c.audit_rates,
                    drift=lambda window_s: c.monitor.drift_report(window_s),
                    drift_window_s=cfg.alert_window_s,
                ),
                s,
            ),
        ],
        host=cfg.grpc_host,
        port=cfg.grpc_port,
        device_port=cfg.device_port,
        workers=cfg.grpc_workers,
        max_message_bytes=cfg.max_message_bytes,
        stream_limits=replace(
            StreamLimits.for_workers(cfg.grpc_workers), idle_s=cfg.download_stall_s
        ),
        read_timeout_s=cfg.request_read_timeout_s,
    )
    server.start()
    grace = cfg.shutdown_grace_s
    stack.callback(lambda: server.stop(grace).wait(grace + 1))


def _start_http(c: Controller, stack: ExitStack, http_secret: str) -> None:
    from controller.http.assembly import start_http

    latency, windows = LatencyHistograms(), DeviceWindows(c.config.metrics_window_s)
    c.device_messages.telemetry_listeners += [latency.add, windows.add]
    server = start_http(c, stack, latency, windows, http_secret)
    c.http_port = server.port
    host = c.config.http_host
    if host in ("0.0.0.0", "::"):  # every interface: the URL names the advertised host
        host = c.config.advertise_host
    c.http_url = f"{server.scheme}://{f'[{host}]' if ':' in host else host}:{server.port}"


def _open_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot use {data_dir} as the controller's data directory: "
            f"{exc.strerror or exc} (pass a writable --data-dir)"
        ) from exc


def rollout_download_default(cfg: ControllerConfig) -> int:
    """Concurrent downloads a rollout starts by default: what this replica serves at once."""
    if cfg.rollout_max_downloads > 0:
        return cfg.rollout_max_downloads
    if cfg.store.startswith("s3://") and cfg.artifact_url_lifetime_s > 0:
        return PRESIGNED_DOWNLOADS  # the bucket serves the bytes, not this replica
    return max(10, StreamLimits.for_workers(cfg.grpc_workers).total)


def _notify(listeners: list[Callable[[], None]]) -> None:
    for listener in listeners:
        try:
            listener()
        except Exception:  # one failing listener must not keep the others from hearing
            log.exception("credentials listener failed")


def _spawn(threads: list[threading.Thread], name: str, target: Callable[[], None]) -> None:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    threads.append(thread)


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=2)


def _fan_out(*listeners: Callable[[LabelledPair], None]) -> Callable[[LabelledPair], None]:
    def each(pair: LabelledPair) -> None:
        for listener in listeners:
            listener(pair)

    return each


def _device_labels(registry: DeviceRegistry) -> Callable[[str], Mapping[str, str] | None]:
    """A device's labels (None: no such device), for the hard-example policies' filter."""

    def labels(device_id: str) -> Mapping[str, str] | None:
        try:
            return registry.get(device_id).labels
        except NotFound:
            return None

    return labels


def _plan_audits(c: Controller, interval_s: float) -> None:
    """Adaptive audit rate: every interval, each device's audit fraction for the target
    interval width within the audit budgets (controller.services.audit_rates)."""
    while not c.stopped.wait(interval_s):
        if not c.leader.is_leader:  # the leader plans (and republishes) audit fractions
            continue
        try:
            views = fleet_status(c.registry, c.telemetry, None, {}, DEFAULT_WINDOW_S)
            plan_audits_once(c.audit_rates, views)
        except Exception:  # the planner must outlive a database hiccup
            log.exception("audit planning failed")


def _ingest_name(cfg: ControllerConfig, leader: Leadership | SoleLeader) -> str:
    """What names this replica's MQTT session: the configured replica id; without one, on
    PostgreSQL, the host name (a restarted controller resumes its session, and replicas on
    different hosts never share one); "" on SQLite (the one controller's fixed client id)."""
    if cfg.replica_id:
        return cfg.replica_id
    return socket.gethostname() if isinstance(leader, Leadership) else ""


def _refresh_admission(c: Controller) -> None:
    while not c.stopped.wait(ADMISSION_REFRESH_S):
        try:
            c.device_messages.refresh()
        except Exception:  # must outlive a database hiccup
            log.exception("re-reading enrolled devices failed")


def _sweep_presence(db: Database, stopped: threading.Event, leads: Callable[[], bool]) -> None:
    while not stopped.wait(5.0):
        if not leads():
            continue
        cutoff = int((time.time() - PRESENCE_TIMEOUT_S) * 1000)
        try:
            if n := mark_stale_offline(db, cutoff):
                log.info("marked %d silent devices offline", n)
        except Exception:  # the sweeper must outlive a database hiccup
            log.exception("presence sweep failed")
