"""A desired-state overlay: one field added to every desired state a device is sent.

An overlay sits between the rollout service (or another overlay) and the MQTT publisher. Every
desired state passed through gets ``field`` set to the overlay's current value for that device;
the newest payload per device is kept (for at most ``max_devices`` devices), so that a changed
value republishes it (a device no rollout assigned anything gets ``{"device_id", field}`` only;
its OTA service ignores a desired state without a variant). Used by the drift-aware offload
budgets (controller.monitoring.offload_budget) and the adaptive audit rate
(controller.services.audit_rates).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Protocol

from edgefleet.errors import EdgeFleetError

log = logging.getLogger(__name__)


class DesiredPublisher(Protocol):
    def publish_desired(
        self, device_id: str, payload: bytes, timeout: float | None = None
    ) -> None: ...  # fmt: skip


class DesiredOverlay:
    field: str = ""  # the desired state's key this overlay sets
    digits: int = 3  # its value is rounded to this many decimals

    def __init__(
        self,
        publisher: DesiredPublisher | None,
        publish_timeout_s: float = 2.0,
        max_devices: int = 100_000,
    ) -> None:
        self._publisher = publisher
        self._timeout = publish_timeout_s
        self._max_devices = max_devices
        self._lock = threading.Lock()
        self._latest: dict[str, bytes] = {}  # the newest payload passed through, per device

    def value(self, device_id: str) -> float:
        """The field's value for ``device_id``; called with the overlay's lock held."""
        raise NotImplementedError

    def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None) -> None:
        with self._lock:
            if device_id in self._latest or len(self._latest) < self._max_devices:
                self._latest[device_id] = payload
            out = self._overlay(device_id, payload)
        if self._publisher is not None:
            self._publisher.publish_desired(device_id, out, timeout=timeout)

    def _overlay(self, device_id: str, payload: bytes) -> bytes:
        try:
            data = json.loads(payload)
        except ValueError:
            return payload
        if not isinstance(data, dict):
            return payload
        data[self.field] = round(self.value(device_id), self.digits)
        return json.dumps(data, sort_keys=True).encode()

    def _republish(self, device_id: str) -> None:
        """Send the device's newest desired state again, with the field's new value."""
        if self._publisher is None:
            return
        with self._lock:
            base = self._latest.get(device_id) or json.dumps({"device_id": device_id}).encode()
            out = self._overlay(device_id, base)
        try:
            self._publisher.publish_desired(device_id, out, timeout=self._timeout)
        except EdgeFleetError as exc:  # the next change or rollout publish carries it again
            log.warning("%s for %s not published: %s", self.field, device_id, exc)
