"""The last ``window_s`` of every device's reports, in memory, for /metrics.

Fed by the ingest (``add`` is a DeviceMessages telemetry listener) so a scrape does not read
the window back from the database: with 1000 devices at one report per 10 s a database read
of a 60 s window costs about 0.7 s. Each device keeps running sums per variant: a report is
added when it arrives and subtracted when it leaves the window (all sums are integer counts,
so they stay exact; each histogram key is kept while a report in the sum has it, as a fresh
sum would keep it), and a scrape copies one sum per device and variant. After a restart the
window fills again within ``window_s``. A report replayed late (an agent's spool after an
outage) leaves the window when the reports that arrived before it have left.

Bounded: at most ``max_reports`` per device (the oldest leave first: a device reporting
faster than ``max_reports`` per window is summed over its newest ones) and ``max_devices``
devices (reports of further devices are counted in ``not_kept``, never stored).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from controller.services.telemetry_math import ReportSample, Totals

_HISTOGRAMS = tuple(f.name for f in fields(Totals) if f.name not in Totals.COUNTS
                    and f.name not in ("first_start_ms", "last_end_ms"))  # fmt: skip


@dataclass
class _Sum:
    totals: Totals = field(default_factory=Totals)
    # per histogram: how many of the summed reports have each key (zero-count keys included)
    keys: dict[str, Counter[object]] = field(
        default_factory=lambda: {name: Counter() for name in _HISTOGRAMS}
    )

    def add(self, s: ReportSample) -> None:
        self.totals.add_sample(s)
        for name in _HISTOGRAMS:
            self.keys[name].update(getattr(s, name).keys())

    def subtract(self, s: ReportSample) -> None:
        t = self.totals
        t.reports -= 1
        for name in Totals.COUNTS[1:]:
            setattr(t, name, getattr(t, name) - s.count(name))
        for name in _HISTOGRAMS:
            counts: Counter[object] = getattr(t, name)
            held = self.keys[name]
            for key, n in getattr(s, name).items():
                counts[key] -= n
                held[key] -= 1
                if held[key] <= 0:
                    del held[key]
                    del counts[key]


@dataclass
class _Device:
    reports: deque[ReportSample] = field(default_factory=deque)
    sums: dict[str, _Sum] = field(default_factory=dict)  # variant -> running sums


class DeviceWindows:
    def __init__(
        self,
        window_s: float = 60.0,
        max_reports: int = 120,
        max_devices: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_ms = int(window_s * 1000)
        self._max_reports = max_reports
        self._max_devices = max_devices
        self._clock = clock
        self._devices: dict[str, _Device] = {}
        self._lock = threading.Lock()
        self.not_kept = 0

    def add(self, sample: ReportSample) -> None:
        with self._lock:
            device = self._devices.get(sample.device_id)
            if device is None:
                if len(self._devices) >= self._max_devices:
                    self.not_kept += 1
                    return
                device = self._devices[sample.device_id] = _Device()
            if len(device.reports) >= self._max_reports:
                self._leave(device)
            device.reports.append(sample)
            device.sums.setdefault(sample.variant_id, _Sum()).add(sample)

    def totals(self) -> dict[str, dict[str, Totals]]:
        """device -> variant -> sums of the reports within the window (copies)."""
        since = int(self._clock() * 1000) - self.window_ms
        out: dict[str, dict[str, Totals]] = {}
        with self._lock:
            for device_id in list(self._devices):
                device = self._devices[device_id]
                while device.reports and device.reports[0].end_ms <= since:
                    self._leave(device)
                if not device.reports:
                    del self._devices[device_id]
                    continue
                spans: dict[str, tuple[int, int]] = {}  # a sum's span: of the reports in it
                for s in device.reports:
                    first, last = spans.get(s.variant_id, (s.start_ms, s.end_ms))
                    spans[s.variant_id] = (min(first, s.start_ms), max(last, s.end_ms))
                copies = out[device_id] = {}
                for variant, running in device.sums.items():
                    copy = copies[variant] = Totals()
                    copy.merge(running.totals)
                    copy.first_start_ms, copy.last_end_ms = spans[variant]
        return out

    @staticmethod
    def _leave(device: _Device) -> None:
        old = device.reports.popleft()
        running = device.sums[old.variant_id]
        if running.totals.reports <= 1:
            del device.sums[old.variant_id]
        else:
            running.subtract(old)
