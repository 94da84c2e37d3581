"""The cloud model: an ONNX Runtime session answering preprocessed frames, alone or batched."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from controller.serving.batcher import DynamicBatcher
from controller.serving.errors import AnswerTimeout, MalformedFrame, Overloaded, ServingFailure
from edgefleet.errors import InvalidInput
from edgefleet.frames import frame_tensor
from edgefleet.modelmeta import Preprocessing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: int
    label_name: str
    confidence: float
    probabilities: tuple[float, ...]
    model_id: str
    queue_ms: float = 0.0
    infer_ms: float = 0.0


class Predictor(Protocol):
    """What the offload servicer calls: one raw frame in, one prediction out."""

    model_id: str

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input (height, width): frames far larger are refused undecoded."""
        ...

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction: ...


def preprocess(frame: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """H x W [x C] uint8/float frame -> float32 batch-1 tensor per `pre` (edgefleet.frames)."""
    try:
        return frame_tensor(frame, pre)
    except InvalidInput as exc:
        raise MalformedFrame(str(exc)) from exc


def predictions_from(
    out: np.ndarray,
    model_id: str,
    labels: Sequence[str],
    temperature: float = 1.0,
    outputs_are_logits: bool = True,
    infer_ms: float = 0.0,
) -> list[Prediction]:
    """A classifier's N x K outputs -> N predictions: softmax(logits / T), top label."""
    x = np.asarray(out, np.float64).reshape(len(out), -1)
    if not outputs_are_logits:
        x = np.log(np.clip(x, 1e-12, None))
    x = x / temperature
    e = np.exp(x - x.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    predictions = []
    for row in probs:
        label = int(np.argmax(row))
        name = labels[label] if label < len(labels) else str(label)
        predictions.append(
            Prediction(
                label=label,
                label_name=name,
                confidence=float(row[label]),
                probabilities=tuple(float(p) for p in row),
                model_id=model_id,
                infer_ms=infer_ms,
            )
        )
    return predictions


class CloudModel:
    """An ONNX classifier with fixed preprocessing. `run_batch` takes batch-1 tensors."""

    def __init__(
        self,
        path: str | Path,
        preprocessing: Preprocessing,
        model_id: str,
        labels: Sequence[str] = (),
        temperature: float = 1.0,
        outputs_are_logits: bool = True,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # serving calls overlap (handler threads, a batcher): spinning intra-op threads would
        # take the cores the other calls and the gRPC threads need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers)
            )
        except Exception as exc:
            raise ServingFailure(f"cannot load cloud model {path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.preprocessing = preprocessing
        self.model_id = model_id
        self.labels = tuple(labels)
        self.temperature = temperature
        self.outputs_are_logits = outputs_are_logits

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.size

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return preprocess(frame, self.preprocessing)

    def run_batch(self, tensors: Sequence[np.ndarray]) -> list[Prediction]:
        start = time.perf_counter()
        batch = np.concatenate(list(tensors), axis=0)
        try:
            out = np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        except Exception as exc:
            raise ServingFailure(f"cloud model {self.model_id} failed: {exc}") from exc
        infer_ms = (time.perf_counter() - start) * 1000.0
        return predictions_from(
            out, self.model_id, self.labels, self.temperature, self.outputs_are_logits, infer_ms
        )

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        del timeout_s  # runs inline in the caller's thread
        return self.run_batch([self.preprocess(frame)])[0]


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class BatchedModel:
    """A CloudModel behind a DynamicBatcher: preprocessing in the caller's thread, inference
    batched. Overloaded when the queue is full or the measured batch time says the frame
    cannot be answered within `timeout_s`; AnswerTimeout past `timeout_s`."""

    def __init__(
        self,
        model: CloudModel,
        batcher: DynamicBatcher[np.ndarray, Prediction] | None = None,
        max_batch_size: int = 16,
        max_queue_delay_ms: float = 2.0,
        max_queue_size: int = 256,
        workers: int = 1,
    ) -> None:
        self.model = model
        self.model_id = model.model_id
        self.batcher = batcher or DynamicBatcher(
            model.run_batch, max_batch_size, max_queue_delay_ms, max_queue_size, workers
        )

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        start = time.perf_counter()
        if timeout_s is not None and (expected := self.batcher.expected_s()) > timeout_s:
            raise Overloaded(  # before preprocessing: a refused frame costs nothing of it
                f"{self.model_id} would answer in {expected * 1000:.0f} ms "
                f"({self.batcher.queue_depth()} frames queued), past the frame's "
                f"{timeout_s * 1000:.0f} ms deadline"
            )
        tensor = self.model.preprocess(frame)
        submitted = time.perf_counter()
        if timeout_s is not None:
            timeout_s -= submitted - start
        future = self.batcher.submit(tensor)
        try:
            prediction = future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AnswerTimeout(f"no answer from {self.model_id} within {timeout_s}s") from None
        waited_ms = (time.perf_counter() - submitted) * 1000.0
        return replace(prediction, queue_ms=max(0.0, waited_ms - prediction.infer_ms))

    def close(self) -> None:
        self.batcher.close()
