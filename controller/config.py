"""The controller's configuration: one typed object, built at the entry point.

Precedence: command-line flag > environment (EDGEFLEET_*) > TOML file ([controller] table) >
default. Library code receives the built object and never reads the environment itself.

The LiteRT toolchain (``onnx2tf_python``, a Python that can run onnx2tf) is looked for in this
order, the first that answers wins:

1. ``--onnx2tf-python``, 2. ``EDGEFLEET_ONNX2TF_PYTHON``, 3. ``onnx2tf_python`` in the file
   (taken as given, even when it cannot import onnx2tf: the build then says so);
4. ``.venv-tflite/bin/python`` in the project checkout this code runs from,
5. ``.venv-tflite/bin/python`` next to the running interpreter's virtualenv,
6. the controller's own interpreter, when it can import onnx2tf.

4 and 5 count only when that Python imports onnx2tf and the virtualenv is not marked incomplete
(scripts/tflite-venv.sh marks it while installing). The entry point describes where to look
with a ``ToolchainSearch``; without one nothing is searched (``""``: this interpreter, if it has
onnx2tf).
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from controller.errors import ConfigError
from controller.mqtt.hosts import is_loopback

DEFAULT_DATA_DIR = Path("~/.edgefleet").expanduser()
# The `mqtt` setting: which broker devices and the ingest use.
AUTO = "auto"  # a Mosquitto the controller supervises; the embedded broker when none is found
MOSQUITTO = "mosquitto"  # a Mosquitto the controller supervises; an error when none is found
EMBEDDED = "embedded"  # the embedded pure-Python broker (amqtt), loopback only
# anything else: mqtt://host:port or mqtts://host:port of an external broker


@dataclass(frozen=True)
class ControllerConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    db: str = ""  # SQLAlchemy URL; "" = SQLite file in data_dir
    mqtt: str = AUTO  # auto | mosquitto | embedded | mqtt(s)://host:port (see AUTO above)
    mqtt_port: int = 18830  # devices' port of the broker the controller runs (0 = any free)
    mqtt_host: str = ""  # its bind address; "" = loopback if advertise_host is, else 0.0.0.0
    mosquitto_binary: str = ""  # "" = mosquitto on PATH, then /usr/sbin, /usr/local/sbin
    mqtt_max_packet_bytes: int = 256 * 1024  # larger MQTT packets: the client is disconnected
    mqtt_max_connections: int = 10_000  # device connections the broker accepts at once
    mqtt_username: str = "edgefleet-controller"  # on an external broker (one it runs: this one)
    mqtt_password: str = ""  # external broker; "" = the one in <data_dir>/mqtt.secret
    mqtt_reload_command: str = ""  # run after rewriting Mosquitto's passwd/acl files
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051  # TLS: enrollment and the admin API; 0 = any free port
    device_port: int = 50052  # mutual TLS: every call of an enrolled device
    advertise_host: str = "127.0.0.1"  # how devices reach this controller
    profiles_file: Path | None = None
    store: str = ""  # artifact store URL; "" = directory in data_dir
    store_endpoint_url: str = ""  # S3-compatible endpoint for s3:// stores
    # devices fetch artifacts over presigned URLs valid this long (S3 stores only; bytes
    # bypass the controller, DownloadArtifact stays the fallback); 0 = off, at most 7 days
    artifact_url_lifetime_s: int = 300
    # the S3 endpoint as devices reach it, for presigned URLs ("" = store_endpoint_url), when
    # the controller reaches the store under an internal name (http://minio:9000)
    artifact_url_endpoint: str = ""
    onnx2tf_python: str = ""  # Python of the LiteRT toolchain venv; "" = discover (see above)
    grpc_workers: int = 32
    max_message_bytes: int = 8 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    # a call whose request has not arrived this long after it started is cancelled
    request_read_timeout_s: float = 10.0
    # a download stream whose next chunk the device has not taken this long is cancelled
    download_stall_s: float = 10.0
    # cloud models for offloaded frames: EDGE_MODEL=PATH.onnx[:preprocess.json][?batch=..]
    cloud_models: tuple[str, ...] = ()
    # None: the serving plan is measured per cloud model when it loads (controller.serving.plan)
    offload_max_batch_size: int | None = None
    offload_max_queue_delay_ms: float | None = None
    offload_max_queue_size: int = 256  # per model; beyond it offloads get RESOURCE_EXHAUSTED
    # ceiling on every model's stored hard frames together (each model opts in with its own
    # policy and cap: `edgefleet model hard-examples`); 0 = the policies' caps only
    hard_examples_max_bytes: int = 0
    telemetry_raw_retention_s: float = 3600.0
    telemetry_rollup_retention_s: float = 7 * 86400.0
    rollout_tick_s: float = 2.0  # seconds between rollout engine steps
    # HTTP: /metrics and the dashboard (controller.http); plain HTTP unless http_tls
    http_host: str = "127.0.0.1"
    http_port: int = 8480  # 0 = any free port
    http_tls: bool = False  # serve HTTPS with the gRPC server certificate (pki/server.pem)
    metrics_token: str = ""  # bearer token /metrics requires; "" = open (bind loopback then)
    metrics_window_s: float = 60.0  # window of the per-device gauges on /metrics
    # alerts and drift (controller.monitoring): evaluation interval, window, webhook target
    alert_interval_s: float = 5.0
    alert_window_s: float = 60.0  # drift scores and alert rules over the last N seconds
    alert_webhook: str = ""  # http(s) URL: a JSON POST per alert fired or resolved; "" = off
    alert_accuracy_floor: float = 0.0  # estimated accuracy's upper bound below it fires; 0 = off
    alert_clear_after_s: float = 30.0  # an alert ends after this long without its condition
    event_retention_s: float = 30 * 86400.0  # the event log and ended alerts
    # drift-aware offload: frames/s all devices together may offload above their own budgets
    # while drifting (raised through their desired state); 0 = off
    offload_ceiling_fps: float = 0.0
    # adaptive audit rate (controller.services.audit_rates): the accuracy interval's target
    # half width, the audits a second one device and the whole fleet may send, how often
    audit_target_half_width: float = 0.05
    audit_max_device_fps: float = 1.0
    audit_max_fleet_fps: float = 50.0
    audit_plan_interval_s: float = 15.0
    # replicas on one PostgreSQL (deploy/README.md "Running several replicas"): this replica's
    # name ("" = hostname-pid-random for the lease, the host name for its MQTT session; set a
    # stable unique one, e.g. the pod name), the leader lease, the shared ingest
    replica_id: str = ""
    leader_lease_s: float = 10.0  # a dead leader's singleton work resumes elsewhere within this
    mqtt_shared_ingest: bool = False  # $share/edgefleet-ingest/...: each report to one replica
    # read-only directory (a mounted secret) with pki/ca.key, pki/ca.pem, operator.token,
    # mqtt.secret and http.secret, shared by every replica; None = kept in data_dir
    secrets_dir: Path | None = None
    # costs that follow the work, not the fleet size (README "Scaling"): heartbeats are stored
    # in one batched UPDATE this often; a certificate's device is remembered this long (revoked
    # through this replica: forgotten at once); database connections per replica (0 = one per
    # gRPC worker plus DB_POOL_BACKGROUND for the background loops)
    presence_flush_s: float = 1.0
    device_cache_ttl_s: float = 5.0
    db_pool_size: int = 0
    # Mosquitto's passwd/acl rewrite + broker signal for enrollments and revocations is shared:
    # callers arriving while one runs share the next (the enrollment reply waits for its run);
    # > 0 also spaces runs this far apart (fewer reloads, slower enrollments one at a time)
    mqtt_reload_interval_s: float = 0.0
    # a rollout's concurrent downloads when StartRollout gives none; 0 = what one replica
    # serves: the download streams its gRPC workers allow (a quarter of them, at least 10),
    # or 200 when devices fetch from the bucket over presigned URLs. With several replicas
    # set it to that figure times the replicas.
    rollout_max_downloads: int = 0

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'edgefleet.db'}"

    @property
    def embedded_mqtt(self) -> bool:
        """Explicitly the embedded broker (``auto`` may also end there: see plan_mqtt)."""
        return self.mqtt == EMBEDDED

    @property
    def external_mqtt(self) -> bool:
        return self.mqtt not in (AUTO, MOSQUITTO, EMBEDDED)

    @property
    def mqtt_bind_host(self) -> str:
        if self.mqtt_host:
            return self.mqtt_host
        return "127.0.0.1" if is_loopback(self.advertise_host) else "0.0.0.0"


@dataclass(frozen=True)
class MqttPlan:
    """Which broker the controller runs or uses, decided from the config and this machine.

    ``broker`` is ``mosquitto`` (start and supervise ``mosquitto`` at ``bind_host``),
    ``embedded`` (the amqtt fallback at ``bind_host``, always loopback) or ``external``
    (connect to ``config.mqtt``). ``warning`` is for the startup log when not empty."""

    broker: Literal["mosquitto", "embedded", "external"]
    bind_host: str = ""
    mosquitto: Path | None = None
    warning: str = ""


def plan_mqtt(
    config: ControllerConfig, find_mosquitto: Callable[[str | None], Path | None]
) -> MqttPlan:
    """``find_mosquitto(explicit)`` is :func:`controller.mqtt.mosquitto_conf.find_mosquitto`
    (injected so this stays free of I/O in tests). ConfigError for what cannot be run safely."""
    if config.external_mqtt:
        scheme = config.mqtt.split("://", 1)[0]
        if scheme not in ("mqtt", "mqtts") or "://" not in config.mqtt:
            raise ConfigError(
                f"mqtt must be auto, mosquitto, embedded or mqtt://HOST:PORT, not {config.mqtt!r}"
            )
        return MqttPlan("external")
    host = config.mqtt_bind_host
    if config.mqtt == EMBEDDED:
        if not is_loopback(host):
            raise ConfigError(
                f"the embedded MQTT broker only listens on loopback, not {host}: install "
                "mosquitto (--mqtt auto) or pass --mqtt mqtt://HOST:PORT of an external broker"
            )
        return MqttPlan("embedded", host)
    binary = find_mosquitto(config.mosquitto_binary or None)
    if binary is not None:
        return MqttPlan("mosquitto", host, binary)
    if config.mosquitto_binary:
        raise ConfigError(f"mosquitto_binary {config.mosquitto_binary!r} is not an executable")
    if config.mqtt == MOSQUITTO or not is_loopback(host):
        raise ConfigError(
            f"no mosquitto binary found for an MQTT broker on {host}: install mosquitto "
            "(apt-get install mosquitto) or pass --mqtt mqtt://HOST:PORT of an external broker"
        )
    return MqttPlan(
        "embedded",
        host,
        warning="mosquitto not found: using the embedded MQTT broker on loopback "
        "(install mosquitto for devices on other hosts)",
    )


_ENV_PREFIX = "EDGEFLEET_"
ONNX2TF_ENV = _ENV_PREFIX + "ONNX2TF_PYTHON"
TFLITE_VENV = ".venv-tflite"
INCOMPLETE_MARKER = ".edgefleet-incomplete"  # scripts/tflite-venv.sh, while it installs
NOT_SEARCHED = "not searched"
HOW_TO_GET_LITERT = (
    "bash scripts/bootstrap.sh (or scripts/tflite-venv.sh) makes .venv-tflite, "
    "or give --onnx2tf-python / EDGEFLEET_ONNX2TF_PYTHON"
)


@dataclass(frozen=True)
class ToolchainSearch:
    """What the entry point knows about the running process, for finding the LiteRT toolchain
    when no layer names one. ``has_onnx2tf(python)`` says whether that Python imports onnx2tf."""

    interpreter: Path
    venv: Path | None  # the running interpreter's virtualenv (sys.prefix), if it is one
    checkout: Path | None  # the project checkout this code runs from, if it is one
    has_onnx2tf: Callable[[str], bool]

    @classmethod
    def of_this_process(cls) -> ToolchainSearch:
        from controller.optimize.tflite_variants import Onnx2TfConfig, onnx2tf_python

        def has_onnx2tf(python: str) -> bool:
            return onnx2tf_python(Onnx2TfConfig(python=python)) is not None

        checkout = Path(__file__).resolve().parents[1]
        in_venv = sys.prefix != sys.base_prefix
        return cls(
            interpreter=Path(sys.executable),
            venv=Path(sys.prefix) if in_venv else None,
            checkout=checkout if (checkout / "pyproject.toml").is_file() else None,
            has_onnx2tf=has_onnx2tf,
        )

    def venv_candidates(self) -> list[tuple[str, Path]]:
        """(where, python) of each .venv-tflite to try, in order, without duplicates."""
        places = []
        if self.checkout is not None:
            places.append(("in the project checkout", self.checkout))
        if self.venv is not None:
            places.append(("next to the controller's virtualenv", self.venv.parent))
        found: list[tuple[str, Path]] = []
        seen: set[Path] = set()
        for where, base in places:
            venv = base / TFLITE_VENV
            key = venv.resolve()  # the directory, never bin/python (a symlink out of the venv)
            if key not in seen:
                seen.add(key)
                found.append((where, venv / "bin" / "python"))
        return found


@dataclass(frozen=True)
class Onnx2TfChoice:
    """Which LiteRT toolchain the controller will use, where it came from, and what was passed
    over on the way. ``python == ""`` means none: LiteRT variants will be skipped."""

    python: str
    origin: str
    usable: bool
    passed_over: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.origin == NOT_SEARCHED:
            return "LiteRT toolchain: not searched (onnx2tf in this interpreter, if it has it)"
        if self.python and self.usable:
            return f"LiteRT toolchain: {self.python} ({self.origin})"
        notes = "".join(f"; {note}" for note in self.passed_over)
        if self.python:
            return (
                f"LiteRT toolchain: {self.python} ({self.origin}) cannot import onnx2tf: "
                f"LiteRT variants will be skipped{notes}; {HOW_TO_GET_LITERT}"
            )
        return (
            f"LiteRT toolchain not found: LiteRT variants will be skipped{notes}; "
            f"{HOW_TO_GET_LITERT}"
        )


def discover_onnx2tf(configured: str, origin: str, search: ToolchainSearch | None) -> Onnx2TfChoice:
    """Steps 4-6 of the order above when ``configured`` (steps 1-3) is empty."""
    if configured:
        usable = search.has_onnx2tf(configured) if search is not None else True
        return Onnx2TfChoice(configured, origin, usable)
    if search is None:
        return Onnx2TfChoice("", NOT_SEARCHED, False)
    passed_over: list[str] = []
    for where, python in search.venv_candidates():
        if not python.exists():
            continue
        if (python.parents[1] / INCOMPLETE_MARKER).exists():
            passed_over.append(f"{python.parents[1]} is incomplete (its install did not finish)")
        elif search.has_onnx2tf(str(python)):
            return Onnx2TfChoice(str(python), f"{TFLITE_VENV} {where}", True, tuple(passed_over))
        else:
            passed_over.append(f"{python} cannot import onnx2tf")
    if search.has_onnx2tf(str(search.interpreter)):
        return Onnx2TfChoice(
            str(search.interpreter), "the controller's own environment", True, tuple(passed_over)
        )
    return Onnx2TfChoice("", "", False, tuple(passed_over))


def _python_path(value: str) -> str:
    """A configured interpreter as an absolute path (onnx2tf runs in another working directory);
    a bare command name stays as it is, for PATH to find."""
    value = os.path.expanduser(value.strip())
    return os.path.abspath(value) if value and os.sep in value else value


# Settings whose default None means "measure": their type when given.
_OPTIONAL_NUMBERS: dict[str, type] = {
    "offload_max_batch_size": int,
    "offload_max_queue_delay_ms": float,
}


def _coerce(name: str, value: Any, target: Any) -> Any:
    try:
        if name in _OPTIONAL_NUMBERS:
            return None if value in (None, "") else _OPTIONAL_NUMBERS[name](value)
        if name in {"data_dir", "profiles_file", "secrets_dir"}:
            return Path(str(value)).expanduser() if value not in (None, "") else None
        if name == "onnx2tf_python":
            return _python_path(str(value))
        if isinstance(target, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if isinstance(target, bool):
            return str(value).lower() in {"1", "true", "yes", "on"}
        if isinstance(target, int):
            return int(value)
        if isinstance(target, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value for {name}: {value!r}") from exc


MAX_URL_LIFETIME_S = 7 * 86400  # the longest an S3 SigV4 presigned URL may live


def check_url_lifetime(seconds: int) -> None:
    if not 0 <= seconds <= MAX_URL_LIFETIME_S:
        raise ConfigError(
            f"artifact_url_lifetime_s must be 0 (off) .. {MAX_URL_LIFETIME_S}, not {seconds}"
        )


@dataclass(frozen=True)
class LoadedConfig:
    config: ControllerConfig
    onnx2tf: Onnx2TfChoice


def build_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None = None,
    *,
    toolchain: ToolchainSearch | None = None,
) -> ControllerConfig:
    """Merge the layers; ``flags`` holds only options the user actually gave (None = unset)."""
    return load_config(flags, env, config_file, toolchain=toolchain).config


def load_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None = None,
    *,
    toolchain: ToolchainSearch | None = None,
) -> LoadedConfig:
    """``build_config``, and which LiteRT toolchain it chose and why (for the startup line)."""
    defaults = ControllerConfig()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    file_values: Mapping[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(config_file.read_text()).get("controller", {})
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
    known = {f.name for f in fields(ControllerConfig)}
    if unknown := set(file_values) - known:
        raise ConfigError(f"unknown settings in {config_file}: {', '.join(sorted(unknown))}")
    for name in known:
        default = getattr(defaults, name)
        env_name = _ENV_PREFIX + name.upper()
        layers = (
            (flags.get(name), "flag"),
            (env.get(env_name), env_name),
            (file_values.get(name), f"config file {config_file}"),
        )
        for layer, origin in layers:
            if layer is not None:
                values[name] = _coerce(name, layer, default)
                origins[name] = origin
                break
    config = replace(defaults, **values)
    if config.data_dir is None:
        raise ConfigError("data_dir must not be empty")
    check_url_lifetime(config.artifact_url_lifetime_s)
    origin = origins.get("onnx2tf_python", "default")
    choice = discover_onnx2tf(
        config.onnx2tf_python, "--onnx2tf-python" if origin == "flag" else origin, toolchain
    )
    if choice.python != config.onnx2tf_python:
        config = replace(config, onnx2tf_python=choice.python)
    return LoadedConfig(config, choice)
