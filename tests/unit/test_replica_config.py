"""Replica settings: how they load, and the ingest identity they give each replica."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ControllerConfig, build_config
from controller.errors import ConfigError
from controller.mqtt_setup import SINGLE_INGEST_CLIENT_ID, ingest_identity
from controller.services.leadership import LeaseConfig, default_replica_id


def test_replica_settings_load_from_the_environment() -> None:
    config = build_config(
        {},
        {
            "EDGEFLEET_REPLICA_ID": "ctl-0",
            "EDGEFLEET_LEADER_LEASE_S": "4.5",
            "EDGEFLEET_MQTT_SHARED_INGEST": "true",
            "EDGEFLEET_SECRETS_DIR": "/run/secrets/edgefleet",
        },
    )
    assert config.replica_id == "ctl-0" and config.leader_lease_s == 4.5
    assert config.mqtt_shared_ingest and config.secrets_dir == Path("/run/secrets/edgefleet")


def test_each_replica_has_its_own_ingest_client_id() -> None:
    assert ingest_identity(ControllerConfig(), "") == (SINGLE_INGEST_CLIENT_ID, "")
    a = ingest_identity(ControllerConfig(replica_id="a"), "a")
    b = ingest_identity(ControllerConfig(), default_replica_id())
    assert a == ("edgefleet-ingest-a", "") and b[0].startswith("edgefleet-ingest-") and a != b
    shared = ControllerConfig(replica_id="a", mqtt_shared_ingest=True)
    assert ingest_identity(shared, "a") == ("edgefleet-ingest-a", "edgefleet-ingest")


def test_a_shared_ingest_needs_a_stable_replica_id() -> None:
    with pytest.raises(ConfigError, match="stable replica_id"):
        ingest_identity(ControllerConfig(mqtt_shared_ingest=True), default_replica_id())
    with pytest.raises(ConfigError, match="too long"):
        ingest_identity(ControllerConfig(replica_id="x" * 200), "x" * 200)


def test_the_lease_is_renewed_three_times_per_lease_and_polled_at_most_each_second() -> None:
    assert LeaseConfig(9.0).renew_interval_s == 3.0 and LeaseConfig(9.0).poll_interval_s == 1.0
    assert LeaseConfig(1.5).poll_interval_s == 0.5
