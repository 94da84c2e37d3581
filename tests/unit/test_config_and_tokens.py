from pathlib import Path

import pytest

from controller.config import build_config
from controller.errors import ConfigError
from controller.store.db import redact
from edgefleet.enrollment import EnrollmentToken
from edgefleet.errors import InvalidInput


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[controller]\ngrpc_port = 1\ndevice_port = 2\nmqtt = "mqtt://a:1"\n')
    config = build_config({"grpc_port": 9}, {"EDGEFLEET_DEVICE_PORT": "8"}, path)
    assert (config.grpc_port, config.device_port, config.mqtt) == (9, 8, "mqtt://a:1")
    assert config.mqtt_port == 18830
    assert config.db_url.startswith("sqlite:///")


def test_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[controller]\nno_such_setting = 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        build_config({}, {}, path)
    with pytest.raises(ConfigError, match="grpc_port"):
        build_config({}, {"EDGEFLEET_GRPC_PORT": "many"})


def test_token_round_trip_and_errors() -> None:
    token = EnrollmentToken.new("a" * 64)
    assert EnrollmentToken.parse(str(token)) == token
    assert token.credential.count(".") == 1
    for bad in ("", "abc", f"{token.token_id}.{token.secret}", str(token) + "x"):
        with pytest.raises(InvalidInput):
            EnrollmentToken.parse(bad)


def test_database_url_password_is_redacted() -> None:
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


def test_the_example_config_file_is_complete_and_loads(repo_root: Path) -> None:
    from dataclasses import fields

    from controller.config import ControllerConfig

    example = repo_root / "deploy" / "controller.example.toml"
    config = build_config({}, {}, example)
    assert config.hard_examples_max_bytes == 0 and config.cloud_models == ()
    text = example.read_text()
    missing = [f.name for f in fields(ControllerConfig) if f"{f.name} =" not in text]
    assert missing == [], f"settings missing from {example.name}: {missing}"
