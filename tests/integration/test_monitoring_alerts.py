"""Drift alerts through a real controller on loopback: a model built for real (its variant's
validation confidence histogram is the baseline), an enrolled device publishing real
TelemetryReports over MQTT, the evaluation loop firing and resolving an alert, the webhook
POSTing both to a real local HTTP server, the event log, and the drift-aware offload budget
arriving in the device's retained desired state and going back to 0."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import grpc
import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from agent.telemetry import TelemetryAggregator
from controller.app import Controller
from controller.store.models_models import VariantRow
from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc, models_pb2, models_pb2_grpc
from tests.conftest import wait_until
from tests.fleet import Admin, edgefleet_cli, start_controller, status_code
from tests.rollout_fleet import add_tiny

pytestmark = pytest.mark.timeout(120)
CEILING_FPS = 15.0


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Hook.received
    server.shutdown()
    server.server_close()


class Device:
    """An enrolled device's MQTT side: real reports out, retained desired states in."""

    def __init__(self, ctl: Controller, admin: Admin, data_dir: Path, variant: str) -> None:
        identity = enroll(
            data_dir, f"127.0.0.1:{ctl.grpc_port}", admin.register("cam-1"), detect(), attempts=1
        )
        self.device_id = identity.device_id
        self.mqtt = AgentMqttClient(
            AgentMqttConfig(
                url=identity.mqtt_url, device_id=identity.device_id,
                username=identity.mqtt_username, password=identity.mqtt_password,
            )
        )  # fmt: skip
        self.desired: list[dict] = []
        self.mqtt.on_desired(lambda payload: self.desired.append(json.loads(payload)))
        self.mqtt.start()
        self.telemetry = TelemetryAggregator(identity.device_id, "tiny", variant)
        self.rng = random.Random(0)

    def publish(self, confidences: list[float], agree: float) -> None:
        """One report: these frames, and a labelled pair per frame agreeing with ``agree``."""
        for i, c in enumerate(confidences):
            self.telemetry.record_frame(1.0, 1.0, c)
            label = 3 if self.rng.random() < agree else 4
            self.telemetry.record_pair(3, label, audit=i % 2 == 0)
        self.mqtt.publish("telemetry", self.telemetry.report().SerializeToString())

    def budget(self) -> float | None:
        return float(self.desired[-1].get("offload_max_fps", 0.0)) if self.desired else None


def clean_confidences(ctl: Controller, variant: str, n: int, rng: random.Random) -> list[float]:
    """Draws from the variant's own validation histogram (bucket midpoints)."""
    with ctl.db.session() as s:
        baseline = s.get(VariantRow, variant).metrics["confidence_histogram"]["max_softmax"]
    bounds = [0.0, *baseline["bounds"], 1.0]
    buckets = [i for i, c in enumerate(baseline["counts"]) for _ in range(c)]
    return [(bounds[i] + bounds[i + 1]) / 2 for i in (rng.choice(buckets) for _ in range(n))]


def test_drift_fires_an_alert_raises_the_budget_and_both_end(
    tmp_path: Path, webhook: tuple[str, list[dict]]
) -> None:
    url, posted = webhook
    ctl = start_controller(
        tmp_path / "controller", alert_interval_s=0.2, alert_window_s=2.0,
        alert_clear_after_s=1.0, alert_webhook=url, offload_ceiling_fps=CEILING_FPS,
    )  # fmt: skip
    admin = Admin(ctl)
    device = None
    try:
        models = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        version = add_tiny(admin, tmp_path, "tiny", 8)
        request = models_pb2.BuildModelRequest(
            name="tiny", version=version, no_tflite=True, only_variants=["onnx-fp32"],
            measure_runs=2,
        )  # fmt: skip
        list(models.BuildModel(request, timeout=120))
        variant = f"tiny:{version}:onnx-fp32"
        device = Device(ctl, admin, tmp_path / "cam-1", variant)
        rng = random.Random(1)

        # clean: frames like validation, edge and cloud agree: no alert
        for _ in range(3):
            device.publish(clean_confidences(ctl, variant, 150, rng), agree=1.0)
        assert wait_until(lambda: ctl.monitor.device_drift().get(device.device_id), 10)
        score = ctl.monitor.device_drift()[device.device_id]
        assert score.psi is not None and score.psi < 0.25 and score.expected_agreement
        evaluations = ctl.monitor.evaluations
        assert wait_until(lambda: ctl.monitor.evaluations >= evaluations + 3, 5)
        assert ctl.monitoring.alerts.active() == []

        # shifted: confidently wrong (every frame near 1.0, the cloud disagrees on most)
        for _ in range(3):
            device.publish([0.99] * 150, agree=0.2)
        assert wait_until(lambda: {a.rule for a in ctl.monitoring.alerts.active()}
                          >= {"drift", "agreement_drop"}, 10)  # fmt: skip
        alert = next(a for a in ctl.monitoring.alerts.active() if a.rule == "agreement_drop")
        assert alert.device_id == device.device_id and alert.ended_ms is None
        evidence = alert.evidence  # what fired it: agreement well under its validation value
        assert evidence["agreement_high"] < evidence["expected_agreement"] - 0.15
        assert wait_until(lambda: (device.budget() or 0) > 0, 10)
        assert 0 < (device.budget() or 0) <= CEILING_FPS
        assert ctl.offload_budgets.granted_fps() <= CEILING_FPS
        # drift per device and per cohort, as `edgefleet fleet drift` shows it
        report = json.loads(
            edgefleet_cli(tmp_path / "controller", "fleet", "drift", "--format", "json").stdout
        )
        rows = {r["kind"]: r for r in report["scores"]}
        assert rows["device"]["name"] == "cam-1" and rows["device"]["psi"] >= 0.25
        assert rows["device"]["offload_budget_fps"] > 0
        assert rows["cohort"]["subject"] == variant and rows["cohort"]["devices"] == 1
        assert rows["cohort"]["agreement_ci95"][1] < rows["cohort"]["expected_agreement"]

        # the shift ends: the shifted reports leave the 2 s window, the alerts end
        def healthy() -> bool:
            device.publish(clean_confidences(ctl, variant, 100, rng), agree=1.0)
            return not ctl.monitoring.alerts.active()

        assert wait_until(healthy, 20, interval_s=0.5)
        assert wait_until(lambda: device.budget() == 0.0, 10)
        ended = [a for a in ctl.monitoring.alerts.history() if a.rule == "agreement_drop"]
        assert ended and ended[0].ended_ms is not None and ended[0].ended_ms > ended[0].started_ms

        # webhook: a firing and a resolved POST for the alert
        def statuses() -> set[str]:
            return {p["status"] for p in posted if p["alert"]["alert_id"] == alert.alert_id}

        assert wait_until(lambda: statuses() == {"firing", "resolved"}, 10), posted

        # event log, through the admin API: enrollment, build, alerts and the budget moves
        fleet = fleet_pb2_grpc.FleetAdminServiceStub(admin.channel)
        events = fleet.ListEvents(fleet_pb2.ListEventsRequest(), timeout=10).events
        kinds = [e.kind for e in events]
        for kind in ("device.registered", "device.enrolled", "model.built", "alert.fired",
                     "alert.resolved", "offload.budget"):  # fmt: skip
            assert kind in kinds, kinds
        budget_moves = fleet.ListEvents(
            fleet_pb2.ListEventsRequest(kinds=["offload"], device_id="cam-1"), timeout=10
        ).events
        assert [json.loads(e.data_json)["new_fps"] > 0 for e in budget_moves][-1] is True
        assert json.loads(budget_moves[0].data_json)["new_fps"] == 0.0  # newest first
        listed = fleet.ListAlerts(fleet_pb2.ListAlertsRequest(include_resolved=True), timeout=10)
        assert any(a.alert_id == alert.alert_id and not a.active for a in listed.alerts)
        with pytest.raises(grpc.RpcError) as refused:
            fleet.ListEvents(fleet_pb2.ListEventsRequest(limit=-1), timeout=10)
        assert status_code(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        if device is not None:
            device.mqtt.stop()
        admin.close()
        ctl.stop()
