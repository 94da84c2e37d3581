"""Drift-aware offload budgets, carried to devices in their desired state.

``OffloadBudgets`` sits between the rollout service and the MQTT publisher: every desired
state the rollout service publishes gets the device's current ``offload_max_fps`` added, and
a budget change republishes the device's latest desired state with the new value (a device
no rollout has assigned anything gets ``{"device_id", "offload_max_fps"}`` only; its OTA
service ignores a desired state without a variant). The gRPC pull answers the same value
(``budget``). Grants are capped by the fleet's ceiling: the sum of all raised budgets never
exceeds ``ceiling_fps`` (0: drift-aware offload is off).

Budgets live in memory; every change is an ``offload.budget`` event, and a restarted
controller restores the grants still standing from the event log (``restore``), so the first
evaluation that finds no drift on such a device lowers its retained budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from controller.monitoring.events import EventListener, FleetEvent, announce
from controller.services.desired_overlay import DesiredOverlay, DesiredPublisher

log = logging.getLogger(__name__)

FIELD = "offload_max_fps"


class OffloadBudgets(DesiredOverlay):
    field = FIELD

    def __init__(
        self,
        publisher: DesiredPublisher | None,
        ceiling_fps: float,
        listeners: Sequence[EventListener] = (),
        publish_timeout_s: float = 2.0,
        max_devices: int = 100_000,
    ) -> None:
        if ceiling_fps < 0:
            raise ValueError("offload ceiling must be >= 0 frames/s")
        super().__init__(publisher, publish_timeout_s, max_devices)
        self.ceiling_fps = float(ceiling_fps)
        self.listeners: list[EventListener] = list(listeners)
        self._budgets: dict[str, float] = {}

    def value(self, device_id: str) -> float:
        return self._budgets.get(device_id, 0.0)

    # -- budgets -----------------------------------------------------------------------------
    def budget(self, device_id: str) -> float:
        with self._lock:
            return self._budgets.get(device_id, 0.0)

    def budgets(self) -> dict[str, float]:
        with self._lock:
            return dict(self._budgets)

    def restore(self, grants: dict[str, float]) -> None:
        """Grants a previous run made (from the event log), so the monitor lowers them when
        it sees no drift, instead of leaving a raise in a retained desired state."""
        with self._lock:
            for device_id, fps in grants.items():
                if fps > 0:
                    self._budgets[device_id] = float(fps)

    def set_ceiling(self, fps: float) -> None:
        """A new fleet ceiling (0: off). Grants above what it allows are withdrawn; the next
        evaluations grant again within it."""
        if fps < 0:
            raise ValueError("offload ceiling must be >= 0 frames/s")
        with self._lock:
            self.ceiling_fps = float(fps)
            over = sum(self._budgets.values()) > self.ceiling_fps
            withdrawn = list(self._budgets) if over else []
        for device_id in withdrawn:
            self.lower(device_id, f"fleet ceiling now {fps:g} frames/s")

    def granted_fps(self) -> float:
        with self._lock:
            return sum(self._budgets.values())

    def raise_to(self, device_id: str, wanted_fps: float, reason: str) -> float:
        """Grant up to ``wanted_fps`` within what the ceiling leaves; the grant (0: none).
        A grant only grows while it lasts (a device offloading every frame slows down, and its
        lower frame rate must not talk its grant down); ``lower`` ends it."""
        with self._lock:
            others = sum(v for k, v in self._budgets.items() if k != device_id)
            old = self._budgets.get(device_id, 0.0)
            wanted = max(float(wanted_fps), old)
            grant = max(0.0, min(wanted, self.ceiling_fps - others))
            if old > 0 and abs(grant - old) < max(1.0, 0.1 * old):  # measurement noise
                return old
            if grant <= 0:
                return 0.0
            self._budgets[device_id] = grant
        self._changed(device_id, old, grant, reason)
        return grant

    def lower(self, device_id: str, reason: str) -> None:
        with self._lock:
            old = self._budgets.pop(device_id, 0.0)
        if old > 0:
            self._changed(device_id, old, 0.0, reason)

    def raised(self) -> list[str]:
        with self._lock:
            return list(self._budgets)

    def _changed(self, device_id: str, old: float, new: float, reason: str) -> None:
        verb = "raised" if new > old else "lowered"
        log.info("offload budget of device=%s %s %.1f -> %.1f frames/s: %s", device_id, verb,
                 old, new, reason)  # fmt: skip
        announce(
            self.listeners,
            FleetEvent(
                "offload.budget",
                f"offload budget {verb} to {new:.1f} frames/s ({reason})",
                device_id=device_id,
                data={
                    "old_fps": round(old, 3),
                    "new_fps": round(new, 3),
                    "ceiling_fps": self.ceiling_fps,
                    "reason": reason,
                },
            ),
        )
        self._republish(device_id)
