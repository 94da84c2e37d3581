"""What the accuracy estimate needs besides telemetry: each variant's build-time cloud table
(``model_variants.metrics["cloud_by_confidence"]``, cached: a built variant never changes)
and the operator's labelled frames (controller.services.frame_labels)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from controller.monitoring.estimate import (
    CLOUD_TABLE_KEY,
    AccuracyEstimate,
    CloudTable,
    WindowCounts,
    estimate_accuracy,
)
from controller.monitoring.estimate_fleet import combine
from controller.services.frame_labels import FrameLabels
from controller.services.telemetry_math import Totals
from controller.store.db import Database
from controller.store.models_models import VariantRow

log = logging.getLogger(__name__)

LABEL_WINDOW_S = 30 * 86400.0  # labels are few: a month of them speaks for the cloud
MAX_CACHED = 4096


def window_counts(t: Totals) -> WindowCounts:
    return WindowCounts(
        frames=t.frames,
        offloaded=t.offloaded,
        offload_failures=t.offload_failures,
        offload_pairs=t.offload_pairs,
        offload_agreed=t.offload_agreed,
        audit_pairs=t.audit_pairs,
        audit_agreed=t.audit_agreed,
        confidence=dict(t.confidence),
    )


class AccuracyInputs:
    def __init__(
        self,
        db: Database,
        labels: FrameLabels | None = None,
        label_window_s: float = LABEL_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.labels = labels if labels is not None else FrameLabels(db, clock=clock)
        self._label_window_s = label_window_s
        self._clock = clock
        self._tables: dict[str, CloudTable | None] = {}
        self._lock = threading.Lock()

    def table(self, variant_id: str) -> CloudTable | None:
        with self._lock:
            if variant_id in self._tables:
                return self._tables[variant_id]
        table = None
        with self._db.session() as s:
            row = s.get(VariantRow, variant_id) if variant_id else None
            stored = (row.metrics or {}).get(CLOUD_TABLE_KEY) if row is not None else None
        if stored:
            try:
                table = CloudTable.from_dict(stored)
            except (TypeError, ValueError, KeyError) as exc:
                log.warning("variant %s has an unreadable cloud table: %s", variant_id, exc)
        with self._lock:
            if len(self._tables) >= MAX_CACHED:
                self._tables.clear()
            if row is not None:  # an unknown variant may be built later: not cached
                self._tables[variant_id] = table
        return table

    def estimate(self, per_variant: Mapping[str, Totals]) -> AccuracyEstimate:
        """The estimate over a window's reports, per variant, combined by frames."""
        since_ms = int((self._clock() - self._label_window_s) * 1000)
        parts = []
        for variant_id, t in per_variant.items():
            model = variant_id.split(":", 1)[0]
            labels = self.labels.counts(model, since_ms) if model else None
            estimate = estimate_accuracy(window_counts(t), self.table(variant_id), labels)
            parts.append((t.frames, estimate))
        return combine(parts)
