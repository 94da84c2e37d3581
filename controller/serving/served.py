"""A cloud model as served: its serving plan and the predictor that carries it out."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from controller.serving.cloud_model import BatchedModel, CloudModel, Prediction
from controller.serving.combining import CombinedModel, DirectModel
from controller.serving.measure import DEFAULT_BUDGET_S, compare_under_load, measure_batches
from controller.serving.plan import ServingPlan, best_batch, choose_plan
from controller.serving.triton import TritonModel

log = logging.getLogger(__name__)
LOAD_TIMEOUT_S = 30.0
Backend = DirectModel | CombinedModel | BatchedModel | TritonModel


def measure_plan(model: CloudModel, budget_s: float = DEFAULT_BUDGET_S) -> ServingPlan:
    """Measurement 1 on ``model.run_batch`` (a blank frame, preprocessed); when batching can
    pay, measurement 2 through ``predict`` of a direct and a batched predictor; the plan."""
    h, w = model.preprocessing.size
    channels = model.preprocessing.channels
    frame = np.zeros((h, w) if channels == 1 else (h, w, channels), np.uint8)
    probe = model.preprocess(frame)
    timings = measure_batches(lambda size: model.run_batch([probe] * size), budget_s=budget_s)
    load = None
    if (size := best_batch(timings.measurements)) is not None:
        direct = DirectModel(model)
        combined = CombinedModel(model, size.batch_size)  # as served (_backend_for)
        load = compare_under_load(
            lambda: direct.predict(frame, LOAD_TIMEOUT_S),
            lambda: combined.predict(frame, LOAD_TIMEOUT_S),
            size.batch_size,
            slot_s=budget_s / 8,
        )
    return choose_plan(timings.measurements, load, timings.not_measured)


@dataclass(frozen=True)
class QueueStats:
    """What /metrics shows of a served model: frames waiting now, the batch size it batches
    up to now (learnt online for a measured plan), model calls and their frames since it
    loaded (a direct call is a call of one frame)."""

    queue_depth: int
    max_batch_size: int
    batches: int
    frames: int


class ServedModel:
    """A Predictor: a direct call or a batcher, per ``plan``; ``apply`` switches plans."""

    def __init__(
        self, model: CloudModel | TritonModel, plan: ServingPlan, max_queue_size: int = 256
    ) -> None:
        self.model = model
        self.model_id = model.model_id
        self.max_queue_size = max_queue_size
        self._lock = threading.Lock()
        self._closed = False
        self._plan = plan
        self._backend = self._backend_for(plan)
        self._earlier = (0, 0)  # batches and frames of backends replaced by ``apply``

    @property
    def plan(self) -> ServingPlan:
        return self._plan

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    def _backend_for(self, plan: ServingPlan) -> Backend:
        """A measured plan: batches formed in the handlers' threads from the frames waiting
        (no queue delay), capped from the plan's size as the live calls show (batch 1: direct
        calls until they show batching pays); the operator's: direct calls or the batcher."""
        if isinstance(self.model, TritonModel):  # the remote server batches
            return self.model
        single = next((m for m in plan.measurements if m.batch_size == 1), None)
        seed_s = single.median_ms / 1000.0 if single is not None else 0.0  # admission's start
        if plan.source == "measured":  # from the plan's size, as the live calls show it pays
            most = max((m.batch_size for m in plan.measurements), default=1)
            return CombinedModel(
                self.model, most, self.max_queue_size, call_s=seed_s,
                start_batch_size=plan.max_batch_size,
            )  # fmt: skip
        if not plan.batched:
            return DirectModel(self.model, self.max_queue_size, service_s=seed_s)
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
                _, _, batches, frames = _stats(previous)
                self._earlier = (self._earlier[0] + batches, self._earlier[1] + frames)
        previous.close()  # a batcher answers what it queued before it stops

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        return self._backend.predict(frame, timeout_s)

    def queue_stats(self) -> QueueStats:
        with self._lock:
            backend, (batches, frames) = self._backend, self._earlier
        depth, size, now_batches, now_frames = _stats(backend)
        return QueueStats(depth, size, batches + now_batches, frames + now_frames)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backend = self._backend
        backend.close()


def _stats(backend: Backend) -> tuple[int, int, int, int]:
    """(frames waiting, batch size now, calls, frames in them) of a backend."""
    if isinstance(backend, TritonModel):
        return 0, 1, backend.calls, backend.calls
    if isinstance(backend, BatchedModel):
        b = backend.batcher
        return b.queue_depth(), b.max_batch_size, b.batches, b.items
    c = backend.combiner  # DirectModel is a CombinedModel at batch 1
    _, waiting = c.in_flight()
    return waiting, c.batch_cap.cap, c.batches, c.items
