"""The last ``window_s`` of every device's reports, in memory, for /metrics.

Fed by the ingest (``add`` is a DeviceMessages telemetry listener) so a scrape sums a few
reports per device in memory instead of reading the window back from the database: with
1000 devices at one report per 10 s a database read of a 60 s window costs about 0.7 s,
these sums a few ms. After a restart the window fills again within ``window_s``.

Bounded: at most ``max_reports`` per device (oldest dropped) and ``max_devices`` devices
(reports of further devices are counted in ``not_kept``, never stored).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from controller.services.telemetry_math import ReportSample, Totals


class DeviceWindows:
    def __init__(
        self,
        window_s: float = 60.0,
        max_reports: int = 600,
        max_devices: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_ms = int(window_s * 1000)
        self._max_reports = max_reports
        self._max_devices = max_devices
        self._clock = clock
        self._reports: dict[str, deque[ReportSample]] = {}
        self._lock = threading.Lock()
        self.not_kept = 0

    def add(self, sample: ReportSample) -> None:
        with self._lock:
            reports = self._reports.get(sample.device_id)
            if reports is None:
                if len(self._reports) >= self._max_devices:
                    self.not_kept += 1
                    return
                reports = self._reports[sample.device_id] = deque(maxlen=self._max_reports)
            reports.append(sample)

    def totals(self) -> dict[str, dict[str, Totals]]:
        """device -> variant -> sums of the reports that ended within the window."""
        since = int(self._clock() * 1000) - self.window_ms
        with self._lock:
            for device_id in list(self._reports):
                reports = self._reports[device_id]
                while reports and reports[0].end_ms <= since:
                    reports.popleft()
                if not reports:
                    del self._reports[device_id]
            kept = {d: [s for s in r if s.end_ms > since] for d, r in self._reports.items()}
        out: dict[str, dict[str, Totals]] = {}
        for device_id, samples in kept.items():
            per_variant = out[device_id] = {}
            for s in samples:
                per_variant.setdefault(s.variant_id, Totals()).add_sample(s)
        return out
