"""The budget policy's drift inputs: the variant's validation confidence histogram (with
every model loaded) and the controller's drift-aware offload grant (each desired state's
``offload_max_fps``, pushed over MQTT)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from agent.inference.policy import BudgetPolicy
from agent.runtime.model import LoadedModel

log = logging.getLogger(__name__)


def drift_baseline_follows(policy: BudgetPolicy, metric: str) -> Callable[[LoadedModel], None]:
    def follow(loaded: LoadedModel) -> None:
        histograms = loaded.metadata.extra.get("confidence_histogram") or {}
        baseline = histograms.get(metric) if isinstance(histograms, dict) else None
        if not isinstance(baseline, dict):
            return  # a variant built before baselines: no shift check
        try:
            policy.set_baseline(baseline["counts"], baseline["bounds"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("variant %s: unusable confidence baseline: %s", loaded.variant_id, exc)

    return follow


def drift_budget_follows(policy: BudgetPolicy) -> Callable[[bytes], None]:
    def follow(payload: bytes) -> None:
        try:
            desired = json.loads(payload)
            fps = float(desired.get("offload_max_fps") or 0.0)
        except (ValueError, TypeError, AttributeError):
            return  # the OTA service reports a malformed desired state
        if fps != policy.boost_fps:
            log.info("drift-aware offload budget: %.1f frames/s", fps)
            policy.set_boost_fps(fps)

    return follow
