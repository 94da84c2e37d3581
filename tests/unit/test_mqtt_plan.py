"""Which broker the controller runs: plan_mqtt over the mqtt setting, the bind address and
whether a mosquitto binary is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ControllerConfig, build_config, plan_mqtt
from controller.errors import ConfigError

MOSQUITTO = Path("/usr/sbin/mosquitto")


def found(_explicit: str | None) -> Path | None:
    return MOSQUITTO


def missing(_explicit: str | None) -> Path | None:
    return None


def test_default_is_a_supervised_mosquitto_on_loopback() -> None:
    config = ControllerConfig()
    assert config.mqtt == "auto"
    plan = plan_mqtt(config, found)
    assert (plan.broker, plan.bind_host, plan.mosquitto, plan.warning) == (
        "mosquitto",
        "127.0.0.1",
        MOSQUITTO,
        "",
    )


def test_default_binds_all_addresses_when_devices_come_from_elsewhere() -> None:
    plan = plan_mqtt(ControllerConfig(advertise_host="10.0.0.5"), found)
    assert (plan.broker, plan.bind_host) == ("mosquitto", "0.0.0.0")


def test_without_mosquitto_the_default_falls_back_to_embedded_on_loopback_with_a_warning() -> None:
    plan = plan_mqtt(ControllerConfig(), missing)
    assert (plan.broker, plan.bind_host) == ("embedded", "127.0.0.1")
    assert "mosquitto not found" in plan.warning


@pytest.mark.parametrize(
    "config",
    [
        ControllerConfig(advertise_host="10.0.0.5"),
        ControllerConfig(mqtt_host="0.0.0.0"),
        ControllerConfig(mqtt="mosquitto"),
    ],
)
def test_without_mosquitto_a_reachable_or_required_broker_is_a_config_error(
    config: ControllerConfig,
) -> None:
    with pytest.raises(ConfigError, match=r"install mosquitto .* --mqtt mqtt://"):
        plan_mqtt(config, missing)


def test_embedded_is_selectable_but_only_on_loopback() -> None:
    assert plan_mqtt(ControllerConfig(mqtt="embedded"), found).broker == "embedded"
    with pytest.raises(ConfigError, match="only listens on loopback"):
        plan_mqtt(ControllerConfig(mqtt="embedded", advertise_host="edge.example"), found)


def test_external_broker_url() -> None:
    assert plan_mqtt(ControllerConfig(mqtt="mqtts://broker:8883"), missing).broker == "external"
    with pytest.raises(ConfigError, match="mqtt must be"):
        plan_mqtt(ControllerConfig(mqtt="mosquito"), missing)


def test_an_explicit_binary_that_is_missing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mosquitto_binary"):
        plan_mqtt(ControllerConfig(mosquitto_binary="/opt/nothing/mosquitto"), missing)


def test_mqtt_settings_come_from_flags_env_and_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[controller]\nmqtt_max_packet_bytes = 1000\nmosquitto_binary = "/x/m"\n')
    config = build_config({"mqtt_host": "10.1.2.3"}, {"EDGEFLEET_MQTT_MAX_CONNECTIONS": "50"}, file)
    assert (config.mqtt_host, config.mqtt_max_connections) == ("10.1.2.3", 50)
    assert (config.mqtt_max_packet_bytes, config.mosquitto_binary) == (1000, "/x/m")
