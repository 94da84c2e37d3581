"""`edgefleet fleet alerts` and `edgefleet fleet events` as an operator runs them, against a
real controller: devices registered and revoked through the CLI appear in the event log, an
alert opened and closed by the alert log shows with its evidence, bad input is a one-line
error with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.monitoring.alerts import Finding
from tests.fleet import edgefleet_cli, start_controller

pytestmark = pytest.mark.timeout(120)


def test_fleet_alerts_and_events(tmp_path: Path) -> None:
    data = tmp_path / "controller"
    ctl = start_controller(data)
    try:
        edgefleet_cli(data, "device", "register", "cam-1", "--profile", "generic-cpu")
        edgefleet_cli(data, "device", "register", "cam-2", "--profile", "generic-cpu")
        edgefleet_cli(data, "device", "revoke", "cam-2")
        cam1 = next(d for d in ctl.registry.list_devices() if d.name == "cam-1")

        out = json.loads(edgefleet_cli(data, "fleet", "events", "--format", "json").stdout)
        kinds = [e["kind"] for e in out["events"]]
        assert kinds[:3] == ["device.revoked", "device.registered", "device.registered"]
        only = edgefleet_cli(data, "fleet", "events", "--kind", "device.revoked", "--format",
                             "json").stdout  # fmt: skip
        assert [e["data"]["name"] for e in json.loads(only)["events"]] == ["cam-2"]
        mine = edgefleet_cli(data, "fleet", "events", "--device", "cam-1", "--format", "json")
        assert [e["device_id"] for e in json.loads(mine.stdout)["events"]] == [cam1.device_id]
        assert "no active alerts" in edgefleet_cli(data, "fleet", "alerts").stdout

        finding = Finding("agreement_drop", cam1.device_id, "cam-1: agreement 0.20 (validation "
                          "0.95)", cam1.device_id, evidence={"agreement": 0.2})  # fmt: skip
        ctl.monitoring.alerts.apply([finding], clear_after_s=0)
        table = edgefleet_cli(data, "fleet", "alerts").stdout
        assert "agreement_drop" in table and "active" in table
        active = json.loads(edgefleet_cli(data, "fleet", "alerts", "--format", "json").stdout)
        assert [(a["rule"], a["active"], a["evidence"]) for a in active["alerts"]] == [
            ("agreement_drop", True, {"agreement": 0.2})
        ]
        ctl.monitoring.alerts.apply([], clear_after_s=0)  # its condition is gone: it ends
        assert "no active alerts" in edgefleet_cli(data, "fleet", "alerts").stdout
        every = json.loads(
            edgefleet_cli(
                data, "fleet", "alerts", "--all", "--since", "1h", "--format", "json"
            ).stdout
        )
        assert every["alerts"][0]["ended_unix_ms"] >= every["alerts"][0]["started_unix_ms"]

        bad = edgefleet_cli(data, "fleet", "events", "--since", "yesterday-ish", check=False)
        assert bad.returncode != 0 and "bad time" in bad.stderr and "Traceback" not in bad.stderr
        unknown = edgefleet_cli(data, "fleet", "events", "--device", "nosuch", check=False)
        assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    finally:
        ctl.stop()
