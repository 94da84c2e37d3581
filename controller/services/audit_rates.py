"""Adaptive audit rate: the audit fraction each device needs for a target interval width,
within a per-device and a per-fleet audit budget, carried in its desired state.

``plan`` is pure (controller.monitoring.estimate.audit_fraction_needed per device, then
scaled down alike when the fleet's audits would exceed its budget). ``AuditRates`` sits
between the rollout service and the next desired-state publisher (like
controller.monitoring.offload_budget.OffloadBudgets, which it is chained in front of): every
desired state gets the device's ``audit_fraction``, and a changed fraction republishes the
device's latest desired state (``{"device_id", "audit_fraction"}`` for a device no rollout
assigned anything; its OTA service ignores a desired state without a variant). Fractions
live in memory; after a restart the next plan sets them again. The agent never audits below
its own ``--audit-rate``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.monitoring.estimate import AccuracyEstimate
from controller.monitoring.estimate_fleet import audit_fraction_needed, fleet_audit_fractions
from controller.services.desired_overlay import DesiredOverlay, DesiredPublisher
from controller.services.fleet import DeviceInferenceView

log = logging.getLogger(__name__)

FIELD = "audit_fraction"


@dataclass(frozen=True)
class AuditBudget:
    target_half_width: float = 0.05  # ± of the accuracy interval to reach
    max_device_fps: float = 1.0  # audits a second one device may send
    max_fleet_fps: float = 50.0  # ... and all devices together
    window_s: float = 60.0  # the window the interval is computed over
    floor: float = 0.02  # the agents' default rate


@dataclass(frozen=True)
class DevicePlan:
    fraction: float
    why: str


def plan(
    devices: Mapping[str, tuple[AccuracyEstimate, float]], budget: AuditBudget
) -> dict[str, DevicePlan]:
    """device -> (its estimate over the window, confident frames/s) -> its audit fraction."""
    wanted: dict[str, tuple[float, float]] = {}
    why: dict[str, str] = {}
    for device_id, (estimate, confident_fps) in devices.items():
        fraction, reason = audit_fraction_needed(
            estimate, confident_fps, budget.window_s, budget.target_half_width,
            budget.max_device_fps, budget.floor,
        )  # fmt: skip
        wanted[device_id] = (fraction, confident_fps)
        why[device_id] = reason
    scaled = fleet_audit_fractions(wanted, budget.max_fleet_fps)
    out = {}
    for device_id, fraction in scaled.items():
        reason = why[device_id]
        if fraction < wanted[device_id][0] - 1e-9:
            reason = f"scaled down by the fleet's audit budget ({budget.max_fleet_fps:g}/s)"
        out[device_id] = DevicePlan(max(budget.floor, fraction), reason)
    return out


class AuditRates(DesiredOverlay):
    field = FIELD
    digits = 4

    def __init__(
        self,
        publisher: DesiredPublisher | None,
        budget: AuditBudget | None = None,
        publish_timeout_s: float = 2.0,
        max_devices: int = 100_000,
    ) -> None:
        super().__init__(publisher, publish_timeout_s, max_devices)
        self.budget = budget or AuditBudget()
        self._fractions: dict[str, DevicePlan] = {}

    def value(self, device_id: str) -> float:
        entry = self._fractions.get(device_id)
        return entry.fraction if entry else 0.0

    def fraction(self, device_id: str) -> float:
        with self._lock:
            entry = self._fractions.get(device_id)
            return entry.fraction if entry else 0.0

    def apply(self, plans: Mapping[str, DevicePlan]) -> list[str]:
        """Keep the new fractions; republish the devices whose fraction moved by more than
        a tenth (or 0.005); the devices republished."""
        changed = []
        with self._lock:
            for device_id, p in plans.items():
                old = self._fractions.get(device_id)
                if old is not None and abs(p.fraction - old.fraction) <= max(
                    0.005, 0.1 * old.fraction
                ):
                    continue
                if old is None and len(self._fractions) >= self._max_devices:
                    continue
                self._fractions[device_id] = p
                changed.append(device_id)
        for device_id in changed:
            log.info("audit fraction of device=%s: %.3f (%s)", device_id,
                     plans[device_id].fraction, plans[device_id].why)  # fmt: skip
            self._republish(device_id)
        return changed


def plan_once(rates: AuditRates, views: Sequence[DeviceInferenceView]) -> list[str]:
    """One planning round over ``fleet_status`` views (devices with frames in the window)."""
    devices = {}
    for v in views:
        m = v.metrics
        if not m.frames:
            continue
        confident_fps = (m.frames_per_s or 0.0) * (1.0 - (m.offload_rate or 0.0))
        devices[v.device_id] = (m.accuracy, confident_fps)
    return rates.apply(plan(devices, rates.budget))
