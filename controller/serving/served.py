"""A cloud model as served: its serving plan and the predictor that carries it out."""

from __future__ import annotations

import logging
import threading

import numpy as np

from controller.serving.cloud_model import BatchedModel, CloudModel, DirectModel, Prediction
from controller.serving.measure import DEFAULT_BUDGET_S, measure_batches
from controller.serving.plan import ServingPlan, choose_plan

log = logging.getLogger(__name__)


def measure_plan(model: CloudModel, budget_s: float = DEFAULT_BUDGET_S) -> ServingPlan:
    """Time ``model.run_batch`` per batch size on a preprocessed blank frame; choose from it."""
    h, w = model.preprocessing.size
    channels = model.preprocessing.channels
    shape = (h, w) if channels == 1 else (h, w, channels)
    probe = model.preprocess(np.zeros(shape, np.uint8))
    timings = measure_batches(lambda size: model.run_batch([probe] * size), budget_s=budget_s)
    return choose_plan(timings.measurements, not_measured=timings.not_measured)


class ServedModel:
    """A Predictor: a direct call or a batcher, per ``plan``; ``apply`` switches plans."""

    def __init__(self, model: CloudModel, plan: ServingPlan, max_queue_size: int = 256) -> None:
        self.model = model
        self.model_id = model.model_id
        self.max_queue_size = max_queue_size
        self._lock = threading.Lock()
        self._closed = False
        self._plan = plan
        self._backend = self._backend_for(plan)

    @property
    def plan(self) -> ServingPlan:
        return self._plan

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    def _backend_for(self, plan: ServingPlan) -> DirectModel | BatchedModel:
        if not plan.batched:
            return DirectModel(self.model, self.max_queue_size)
        return BatchedModel(
            self.model, None, plan.max_batch_size, plan.max_queue_delay_ms, self.max_queue_size
        )

    def apply(self, plan: ServingPlan) -> None:
        """Serve with ``plan`` from now on (ignored once closed)."""
        backend = self._backend_for(plan)
        with self._lock:
            if self._closed:
                previous = backend
            else:
                previous, self._backend, self._plan = self._backend, backend, plan
        previous.close()  # a batcher answers what it queued before it stops

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        return self._backend.predict(frame, timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backend = self._backend
        backend.close()
