"""Through the rollout service on a real database: a baseline that reported without a gate's
metric does not hold a rollout; a baseline that never reports holds it only until the gate
timeout; an abort withdraws the desired state of devices that have not installed (what the
gRPC pull returns and what is published, retained, over MQTT) and leaves installed ones."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from controller.services.rollouts import RolloutService
from controller.store.db import Database
from tests.integration.test_rollouts_persistence import DEVICES, Clock, Variants


class Metrics:
    """Healthy canary; the pre-rollout window (which ends when the rollout was created) is
    what ``pre`` says: telemetry without agreement, or nothing at all."""

    def __init__(self, pre: str) -> None:
        self.pre, self.created_ms = pre, -1

    def cohort_metrics(self, ids: Any, since_ms: int, until_ms: int | None = None) -> Any:
        ids = list(ids)
        if until_ms == self.created_ms:
            if self.pre == "silent":
                return SimpleNamespace(frames=0, devices_reporting=0)
            return SimpleNamespace(frames=500, devices_reporting=len(ids), local_p95_ms=10.0,
                                   agreement=None, error_rate=0.0, offload_rate=0.1)  # fmt: skip
        return SimpleNamespace(frames=500, devices_reporting=len(ids), local_p95_ms=10.0,
                               agreement=0.97, error_rate=0.0, offload_rate=0.1)  # fmt: skip


class Publisher:
    def __init__(self) -> None:
        self.sent: dict[str, dict[str, Any]] = {}  # the retained message per device

    def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None) -> None:
        self.sent[device_id] = json.loads(payload)


def _service(
    tmp_path: Path, metrics: Any, publisher: Publisher | None = None, clock: Clock | None = None
) -> RolloutService:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()

    def list_devices(selector: Mapping[str, str]) -> list[Any]:
        return list(DEVICES)

    return RolloutService(db, list_devices, Variants(), metrics=metrics, publisher=publisher,
                          clock=clock or Clock())  # fmt: skip


def _install(svc: RolloutService, device_ids: list[str]) -> None:
    for device_id, st in svc.store.statuses(device_ids).items():
        v = st.desired.variant_id
        svc.report(device_id, "committed", v, "", v, st.desired.revision)


def _start(svc: RolloutService, metrics: Metrics | None, **kw: Any) -> str:
    spec = {"model": "m", "version": 2, "stages": [1.0], "soak_seconds": 5, "min_samples": 100,
            **kw}  # fmt: skip
    rid = svc.start_rollout(spec).rollout_id
    if metrics is not None:
        metrics.created_ms = svc.get(rid).created_ms
    return rid


def _was_running_v1(svc: RolloutService) -> None:
    for d in DEVICES:  # every device ran m:1 before, so the gates have a pre-rollout baseline
        svc.report(d.device_id, "", "", "", "m:1:fp32", 0)


def test_pre_rollout_without_agreement_is_not_applicable(tmp_path: Path) -> None:
    metrics, clock = Metrics(pre="no agreement"), Clock()
    svc = _service(tmp_path, metrics, clock=clock)
    _was_running_v1(svc)
    rid = _start(svc, metrics)
    _install(svc, [d.device_id for d in DEVICES])
    svc.tick()
    assert svc.get(rid).state.phase == "soaking"
    clock.now += 6
    svc.tick()
    svc.tick()
    done = svc.get(rid)
    assert done.state.phase == "completed", svc.explain(done)
    agreement = next(g for g in done.state.last_gates if g.metric == "agreement")
    assert agreement.status == "pass" and "not applicable" in agreement.reason
    assert "pre-rollout reported 500 frames but no agreement" in svc.explain(done)


def test_silent_baseline_halts_at_the_gate_timeout(tmp_path: Path) -> None:
    metrics, clock = Metrics(pre="silent"), Clock()
    svc = _service(tmp_path, metrics, clock=clock)
    _was_running_v1(svc)
    rid = _start(svc, metrics, gate_timeout_seconds=60)
    _install(svc, [d.device_id for d in DEVICES])
    svc.tick()
    clock.now += 6
    svc.tick()
    assert "waiting for data" in svc.explain(svc.get(rid))
    clock.now += 50
    svc.tick()
    assert svc.get(rid).state.phase == "soaking"
    clock.now += 20
    svc.tick()
    halted = svc.get(rid)
    assert halted.state.phase == "halted", svc.explain(halted)
    messages = " ".join(e.message for e in svc.store.events(rid))
    assert "gate timeout 60 s" in messages and "no control cohort and no pre-rollout" in messages


def test_abort_withdraws_desired_state_of_devices_not_installed(tmp_path: Path) -> None:
    publisher = Publisher()
    svc = _service(tmp_path, Metrics(pre="no agreement"), publisher)
    svc.report("d3", "", "", "", "m:1:fp32", 0)  # d3 ran m:1 before the rollout
    rid = _start(svc, None, soak_seconds=600)
    assert svc.get(rid).state.count("assigned") == 4
    assert all(publisher.sent[d.device_id]["variant_id"] == "m:2:fp32" for d in DEVICES)
    _install(svc, ["d0"])
    svc.tick()

    aborted = svc.command(rid, "abort", "wrong model")
    assert aborted.state.phase == "aborted"
    # d1, d2 had nothing before: no assignment, in the pull and in the retained message
    for device_id in ("d1", "d2"):
        assert svc.desired_for(device_id) is None
        assert publisher.sent[device_id]["variant_id"] == ""
        assert aborted.state.device(device_id).state == "withdrawn"
    # d3 goes back to the variant it ran
    back = svc.desired_for("d3")
    assert back is not None and back.variant_id == "m:1:fp32"
    assert publisher.sent["d3"]["variant_id"] == "m:1:fp32"
    assert publisher.sent["d3"]["revision"] == back.revision
    # d0 installed before the abort: left as it is, and said so
    kept = svc.desired_for("d0")
    assert kept is not None and kept.variant_id == "m:2:fp32"
    assert "keeps m:2:fp32" in aborted.state.device("d0").reason
    explained = svc.explain(aborted)
    assert "3 assignments withdrawn before install; 1 devices had installed" in explained
    messages = " ".join(e.message for e in svc.store.events(rid))
    assert "withdrew 3 assignments not installed yet" in messages
