"""What a rollout step tells the event log (pure): phase transitions, gate decisions (a
gate's status changed) and rollbacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.monitoring.events import FleetEvent
from controller.rollout import RevertDevice, RolloutState


def step_events(
    rollout_id: str, before: RolloutState, after: RolloutState, actions: Sequence[Any]
) -> list[FleetEvent]:
    rid = rollout_id
    out: list[FleetEvent] = []
    if after.phase != before.phase:
        reason = after.history[-1].reason if after.history else ""
        why = f": {reason}" if reason else ""
        out.append(
            FleetEvent(
                "rollout.phase",
                f"rollout {rid}: {before.phase} -> {after.phase}{why}",
                subject=rid,
                data={
                    "from": before.phase,
                    "to": after.phase,
                    "reason": reason,
                    "stage": after.stage_index,
                },
            )
        )
    was = {g.gate: g.status for g in before.last_gates}
    for g in after.last_gates:
        if was.get(g.gate) != g.status:
            out.append(
                FleetEvent(
                    "rollout.gate",
                    f"rollout {rid}: gate {g.gate} {g.status}: {g.reason}",
                    subject=rid,
                    data=g.to_dict(),
                )
            )
    for a in actions:
        if isinstance(a, RevertDevice):
            out.append(
                FleetEvent(
                    "rollout.rollback",
                    f"rollout {rid}: {a.device_id} back to {a.variant_id or 'nothing'}: {a.reason}",
                    device_id=a.device_id,
                    subject=rid,
                    data={"variant_id": a.variant_id, "reason": a.reason},
                )
            )
    return out
