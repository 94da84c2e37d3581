"""`edgefleet fleet alerts` and `edgefleet fleet events` as an operator runs them, against a
real controller: devices registered, labelled and revoked appear in the event log, an
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
        # operator actions through the registry (the CLI's device commands call the same)
        cam1 = ctl.registry.register("cam-1", "generic-cpu", {}).device
        ctl.registry.register("cam-2", "generic-cpu", {})
        ctl.registry.label("cam-1", {"site": "lab"}, [])
        ctl.registry.revoke("cam-2")

        out = json.loads(edgefleet_cli(data, "fleet", "events", "--format", "json").stdout)
        kinds = [e["kind"] for e in out["events"]]
        assert kinds[:4] == [
            "device.revoked", "device.labelled", "device.registered", "device.registered"
        ]  # fmt: skip
        only = edgefleet_cli(data, "fleet", "events", "--kind", "device.revoked", "--format",
                             "json").stdout  # fmt: skip
        assert [e["data"]["name"] for e in json.loads(only)["events"]] == ["cam-2"]
        mine = edgefleet_cli(data, "fleet", "events", "--device", "cam-1", "--format", "json")
        assert [e["kind"] for e in json.loads(mine.stdout)["events"]] == [
            "device.labelled", "device.registered"
        ]  # fmt: skip
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
