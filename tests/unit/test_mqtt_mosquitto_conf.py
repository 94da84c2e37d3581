"""The generated mosquitto.conf, the broker limits and finding the binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import ConfigError
from controller.mqtt.mosquitto_conf import (
    BrokerLimits,
    MosquittoLayout,
    find_mosquitto,
    mosquitto_conf_text,
)


def _layout(run_as_root: bool = False) -> MosquittoLayout:
    return MosquittoLayout(
        host="0.0.0.0",
        port=1883,
        controller_port=41000,
        directory=Path("/var/lib/edgefleet/mosquitto"),
        run_as_root=run_as_root,
    )


def _settings(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs.append((key, value))
    return pairs


def test_conf_refuses_anonymous_and_reads_the_generated_files() -> None:
    settings = dict(_settings(mosquitto_conf_text(_layout(), BrokerLimits())))
    assert settings["allow_anonymous"] == "false"
    assert settings["per_listener_settings"] == "false"  # auth applies to both listeners
    assert settings["password_file"] == "/var/lib/edgefleet/mosquitto/passwd"
    assert settings["acl_file"] == "/var/lib/edgefleet/mosquitto/acl"
    assert settings["persistence"] == "true"
    assert settings["persistence_location"] == "/var/lib/edgefleet/mosquitto/db/"
    assert settings["log_dest"] == "stderr"
    assert "user" not in settings


def test_conf_carries_every_limit() -> None:
    limits = BrokerLimits(
        max_packet_bytes=1000,
        max_connections=7,
        controller_max_connections=2,
        max_keepalive_s=60,
        max_inflight_messages=3,
        max_queued_messages=4,
        max_queued_bytes=5000,
        autosave_interval_s=9,
    )
    settings = _settings(mosquitto_conf_text(_layout(), limits))
    flat = dict(settings)
    assert flat["max_packet_size"] == "1000"
    assert flat["max_keepalive"] == "60"
    assert flat["max_inflight_messages"] == "3"
    assert flat["max_queued_messages"] == "4"
    assert flat["max_queued_bytes"] == "5000"
    assert flat["autosave_interval"] == "9"
    # each listener with its own connection bound and username-as-client-id, in that order
    listener_part = settings[[k for k, _ in settings].index("listener") :]
    assert listener_part == [
        ("listener", "1883 0.0.0.0"),
        ("max_connections", "7"),
        ("use_username_as_clientid", "true"),
        ("listener", "41000 127.0.0.1"),
        ("max_connections", "2"),
        ("use_username_as_clientid", "true"),
    ]


def test_conf_keeps_root_only_when_the_controller_is_root() -> None:
    assert ("user", "root") in _settings(mosquitto_conf_text(_layout(True), BrokerLimits()))


def test_conf_refuses_a_directory_with_a_line_break() -> None:
    layout = MosquittoLayout("127.0.0.1", 1, 2, Path("/tmp/x\nlistener 1 0.0.0.0"), False)
    with pytest.raises(ConfigError):
        mosquitto_conf_text(layout, BrokerLimits())


@pytest.mark.parametrize(
    "bad", [{"max_packet_bytes": 0}, {"max_connections": -1}, {"max_keepalive_s": 5}]
)
def test_limits_out_of_range_are_a_config_error(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        BrokerLimits(**bad)


def test_find_mosquitto_explicit_path(tmp_path: Path) -> None:
    assert find_mosquitto(str(tmp_path / "missing")) is None
    script = tmp_path / "mosquitto"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert find_mosquitto(str(script)) == script
