"""A forged desired state over MQTT (issue 9, item 4): whoever can publish on a device's
retained ``desired`` topic names a real signed target but rewrites its labels and
temperature. The agent as ``edgefleet-agent run`` assembles it (``build_agent``: MQTT
subscription, OTA service, TUF verifier) refuses it, counts it and reports why; the same
target named without metadata installs exactly the signed target's metadata."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from controller.services.rollout_store import Desired
from controller.services.rollouts import desired_payload, target_of
from edgefleet.updates.custom import decode_custom, variant_fields
from tests.rollout_fleet import FleetAgent, add_and_build, rollout_rig, wait_for

pytestmark = pytest.mark.timeout(180)


def _desired(agent: FleetAgent, v: object, version: int, revision: int, **target: object) -> bytes:
    d = Desired(
        agent.identity.device_id, "tiny", version, v.variant_id, v.target_path, v.sha256,  # type: ignore[attr-defined]
        int(v.size), {**target_of(v), **target}, f"forged-{uuid.uuid4().hex[:6]}", revision,  # type: ignore[attr-defined]
    )  # fmt: skip
    return desired_payload(d)


def test_forged_metadata_over_mqtt_is_refused(tmp_path: Path) -> None:
    with rollout_rig(tmp_path) as rig:
        version = add_and_build(rig.admin, tmp_path, "tiny", 8)
        (agent,) = rig.start_agents(1)
        v = rig.ctl.models.selected_variant("tiny", version, agent.identity.profile)
        assert v is not None
        forged = {**v.metadata.to_dict(), "labels": ["renamed-0", "renamed-1"],
                  "temperature": 0.001}  # fmt: skip
        rig.ctl.ingest.publish_desired(
            agent.identity.device_id, _desired(agent, v, version, 100, custom=forged), timeout=10
        )
        done = ("failed", "probation", "committed")
        wait_for("an outcome", lambda: any(r.phase in done for r in agent.service.reports))
        assert agent.service.current_variant is None  # nothing installed
        last = agent.service.reports[-1]  # sent to the controller (ReportUpdateStatus)
        assert last.phase == "failed", last
        assert "custom.labels" in last.reason and "custom.temperature" in last.reason, last
        assert agent.service.refused["mismatch"] == 1

        rig.ctl.ingest.publish_desired(
            agent.identity.device_id, _desired(agent, v, version, 101), timeout=10
        )
        wait_for("the signed install", lambda: agent.service.current_variant == v.variant_id)
        state = agent.service.store.state()
        assert state.active is not None
        installed = json.loads(
            (agent.service.store.slot_dir(state.active) / "variant.json").read_text()
        )
        signed = rig.ctl.model_parts.releases.targets()[v.target_path]
        assert installed == variant_fields(decode_custom(signed.unrecognized_fields["custom"]))
