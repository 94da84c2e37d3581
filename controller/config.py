"""The controller's configuration: one typed object, built at the entry point.

Precedence: command-line flag > environment (EDGEFLEET_*) > TOML file ([controller] table) >
default. Library code receives the built object and never reads the environment itself.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from controller.errors import ConfigError

DEFAULT_DATA_DIR = Path("~/.edgefleet").expanduser()
EMBEDDED = "embedded"


@dataclass(frozen=True)
class ControllerConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    db: str = ""  # SQLAlchemy URL; "" = SQLite file in data_dir
    mqtt: str = EMBEDDED  # "embedded" or mqtt://host:port of an external broker
    mqtt_port: int = 18830  # the embedded broker's port (0 = any free port)
    mqtt_username: str = "edgefleet-controller"
    mqtt_password: str = ""  # external broker; "" = the one in <data_dir>/mqtt.secret
    mqtt_reload_command: str = ""  # run after rewriting Mosquitto's passwd/acl files
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051  # TLS: enrollment and the admin API; 0 = any free port
    device_port: int = 50052  # mutual TLS: every call of an enrolled device
    advertise_host: str = "127.0.0.1"  # how devices reach this controller
    profiles_file: Path | None = None
    store: str = ""  # artifact store URL; "" = directory in data_dir
    store_endpoint_url: str = ""  # S3-compatible endpoint for s3:// stores
    onnx2tf_python: str = ""  # a Python with the 'tflite' extra (TensorFlow wants its own venv)
    grpc_workers: int = 32
    max_message_bytes: int = 8 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    # cloud models for offloaded frames: EDGE_MODEL=PATH.onnx[:preprocess.json][?batch=..]
    cloud_models: tuple[str, ...] = ()
    offload_max_batch_size: int = 16
    offload_max_queue_delay_ms: float = 2.0
    offload_max_queue_size: int = 256  # per model; beyond it offloads get RESOURCE_EXHAUSTED
    hard_examples_max_bytes: int = 0  # keep offloaded frames for retraining; 0 = off
    telemetry_raw_retention_s: float = 3600.0
    telemetry_rollup_retention_s: float = 7 * 86400.0
    rollout_tick_s: float = 2.0  # seconds between rollout engine steps

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'edgefleet.db'}"

    @property
    def embedded_mqtt(self) -> bool:
        return self.mqtt == EMBEDDED


_ENV_PREFIX = "EDGEFLEET_"


def _coerce(name: str, value: Any, target: Any) -> Any:
    try:
        if name in {"data_dir", "profiles_file"}:
            return Path(str(value)).expanduser() if value not in (None, "") else None
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


def build_config(
    flags: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None = None
) -> ControllerConfig:
    """Merge the layers; ``flags`` holds only options the user actually gave (None = unset)."""
    defaults = ControllerConfig()
    values: dict[str, Any] = {}
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
        for layer in (flags.get(name), env.get(_ENV_PREFIX + name.upper()), file_values.get(name)):
            if layer is not None:
                values[name] = _coerce(name, layer, default)
                break
    config = replace(defaults, **values)
    if config.data_dir is None:
        raise ConfigError("data_dir must not be empty")
    return config
