"""Each variant's drift baseline, read from its build record (``model_variants.metrics``)."""

from __future__ import annotations

import logging
import threading

from controller.monitoring.drift import Baseline
from controller.store.db import Database
from controller.store.models_models import VariantRow

log = logging.getLogger(__name__)

DEFAULT_METRIC = "max_softmax"  # the agent's default confidence


class VariantBaselines:
    """Baselines by variant id, cached (a built variant never changes). A variant without a
    stored histogram falls back to its validation quantiles; an unknown one has none."""

    def __init__(self, db: Database, metric: str = DEFAULT_METRIC, max_cached: int = 4096) -> None:
        self._db = db
        self._metric = metric
        self._max = max_cached
        self._cache: dict[str, Baseline | None] = {}
        self._lock = threading.Lock()

    def get(self, variant_id: str | None) -> Baseline | None:
        if not variant_id:
            return None
        with self._lock:
            if variant_id in self._cache:
                return self._cache[variant_id]
        baseline = self._load(variant_id)
        with self._lock:
            if baseline is not None or len(self._cache) < self._max:
                if len(self._cache) >= self._max:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[variant_id] = baseline
        return baseline

    def _load(self, variant_id: str) -> Baseline | None:
        with self._db.session() as s:
            row = s.get(VariantRow, variant_id)
            metrics = dict(row.metrics or {}) if row is not None else {}
        try:
            histogram = (metrics.get("confidence_histogram") or {}).get(self._metric)
            if histogram:
                return Baseline.from_dict(histogram)
            quantiles = (metrics.get("confidence_quantiles") or {}).get(self._metric)
            if quantiles:
                return Baseline.from_quantiles(quantiles, float(metrics.get("accuracy", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("variant %s has an unreadable confidence baseline: %s", variant_id, exc)
        return None
