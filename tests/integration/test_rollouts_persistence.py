"""The rollout service persists every transition: a service rebuilt on the same database
(a restarted controller) carries on where the old one stopped. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controller.services.rollouts import RolloutService
from controller.store.db import Database
from edgefleet.modelmeta import Preprocessing, VariantMetadata
from tests.fleet import postgres_available, postgres_database

DEVICES = [
    SimpleNamespace(device_id=f"d{i}", profile="p", state="enrolled", labels={}) for i in range(4)
]


class Variants:
    def selected_variant(self, model: str, version: int, profile: str) -> Any:
        vid = f"{model}:{version}:fp32"
        meta = VariantMetadata(
            model=model, version=version, variant="fp32", variant_id=vid, runtime="onnxruntime",
            precision="fp32", file="model.onnx", input_name="x", input_shape=(-1, 4),
            input_dtype="float32", output_name="y", preprocessing=Preprocessing(size=(1, 1)),
        )  # fmt: skip
        return SimpleNamespace(variant_id=vid, target_path=f"models/{vid}", sha256="a" * 64,
                               size=10, metadata=meta)  # fmt: skip

    def check_release(self, model: str, version: int) -> None:
        pass  # every version of this fake registry is built

    def release_variants(self, model: str, version: int) -> dict[str, Any]:
        return {"p": self.selected_variant(model, version, "p")}

    def variant_for(self, variant_id: str, profile: str) -> Any:
        model, version, _ = variant_id.split(":")
        return self.selected_variant(model, int(version), profile)


class Metrics:
    def cohort_metrics(self, ids: Any, since_ms: int, until_ms: int | None = None) -> Any:
        ids = list(ids)
        return SimpleNamespace(frames=500, devices_reporting=len(ids), local_p95_ms=10.0,
                               agreement=0.97, error_rate=0.0, offload_rate=0.1)  # fmt: skip


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'c.db'}"
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    with postgres_database() as url:
        yield url


def _service(db: Database, clock: Clock) -> RolloutService:
    def list_devices(selector: Mapping[str, str]) -> list[Any]:
        return list(DEVICES)

    return RolloutService(db, list_devices, Variants(), metrics=Metrics(), clock=clock)


def _report_all(svc: RolloutService, state: str) -> None:
    for d in svc.store.statuses().values():
        if d.desired.variant_id and d.reported_state == "":
            svc.report(d.device_id, state, d.desired.variant_id, "", d.desired.variant_id,
                       d.desired.revision)  # fmt: skip


def test_restart_mid_rollout_carries_on(db_url: str) -> None:
    clock = Clock()
    db = Database(db_url)
    db.migrate()
    svc = _service(db, clock)
    spec = {"model": "m", "version": 2, "stages": [0.25, 1.0], "soak_seconds": 5,
            "min_samples": 100}  # fmt: skip
    rid = svc.start_rollout(spec).rollout_id
    first = svc.get(rid).state
    assert first.phase == "rolling" and first.count("assigned") == 1
    _report_all(svc, "committed")
    svc.tick()
    assert svc.get(rid).state.phase == "soaking"
    db.close()

    # "Restart": a new database engine and service; nothing is carried in memory.
    db = Database(db_url)
    db.migrate()
    svc = _service(db, clock)
    assert svc.get(rid).state.phase == "soaking"
    clock.now += 6
    svc.tick()
    state = svc.get(rid).state
    assert state.phase == "rolling" and state.stage_index == 1
    assert all(g.status == "pass" for g in state.last_gates)
    _report_all(svc, "committed")
    svc.tick()
    clock.now += 6
    svc.tick()
    svc.tick()
    done = svc.get(rid)
    assert done.state.phase == "completed", svc.explain(done)
    assert done.state.count("healthy") == len(DEVICES)
    messages = [e.message for e in svc.store.events(rid)]
    assert any("entering stage 2" in m for m in messages)
    assert any("all stages passed" in m for m in messages)
    desired = svc.desired_for("d0")
    assert desired is not None and desired.variant_id == "m:2:fp32" and desired.revision >= 1
    db.close()
