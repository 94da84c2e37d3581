"""Publishes a TelemetryReport every interval over MQTT (QoS 1), store-and-forward on disk.

Every report goes into the DiskSpool first; the spool is then drained oldest first while
the broker acknowledges (QoS 1 PUBACK). While the broker is unreachable reports wait on disk
(bounded: beyond it the oldest are dropped and the next report carries `reports_dropped`)
and go out in order after reconnect. A report whose ack timed out is sent again, so the
controller may see a duplicate (it de-duplicates by sequence and interval start).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from agent.telemetry.aggregator import TelemetryAggregator
from agent.telemetry.spool import DiskSpool, SpoolError
from edgefleet import topics

log = logging.getLogger(__name__)


class ConfirmingPublisher(Protocol):
    def publish_confirmed(self, kind: str, payload: bytes, timeout: float) -> bool: ...


class TelemetryPublisher:
    """A component: `start()` runs the interval thread, `stop()` publishes a last report."""

    name = "telemetry"

    def __init__(
        self,
        aggregator: TelemetryAggregator,
        spool: DiskSpool,
        mqtt: ConfirmingPublisher | None,
        interval_s: float = 10.0,
        ack_timeout_s: float = 5.0,
        drain_poll_s: float = 1.0,
    ) -> None:
        self.aggregator = aggregator
        self.spool = spool
        self.mqtt = mqtt
        self.interval_s = interval_s
        self.ack_timeout_s = ack_timeout_s
        self.drain_poll_s = min(drain_poll_s, interval_s)
        self.published = 0
        self.spooled = 0
        self._stop = threading.Event()
        self._drain_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="telemetry-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.publish_now()  # the last partial interval (kept on disk if it cannot go out)

    def _loop(self) -> None:
        waited = 0.0
        while not self._stop.wait(self.drain_poll_s):
            waited += self.drain_poll_s
            if waited + 1e-9 >= self.interval_s:
                waited = 0.0
                self.publish_now()
            elif len(self.spool):
                self.drain()  # deliver the backlog soon after a reconnect

    def publish_now(self) -> None:
        """Close the interval, spool its report, deliver what the broker takes."""
        report = self.aggregator.report(reports_dropped=self.spool.take_dropped())
        try:
            self.spool.append(report.SerializeToString())
            self.spooled += 1
        except SpoolError as exc:
            log.error("telemetry report %d lost: %s", report.sequence, exc)
            return
        self.drain()

    def drain(self) -> int:
        """Publish spooled reports oldest first until one is not acknowledged; returns how many."""
        if self.mqtt is None:
            return 0
        sent = 0
        with self._drain_lock:
            for key, payload in self.spool.pending():
                if not self.mqtt.publish_confirmed(topics.TELEMETRY, payload, self.ack_timeout_s):
                    break
                self.spool.ack(key)
                sent += 1
        self.published += sent
        return sent
