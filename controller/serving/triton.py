"""A cloud model served by a Triton (or any KServe v2) inference server, over the open
inference protocol's HTTP binding (``tritonclient.http``): for fleets that outgrow one box.

The controller preprocesses each frame itself (edgefleet.frames, as for its own cloud models)
and sends the float32 tensor; the server batches as it likes; the answer's logits become a
Prediction here (temperature, softmax, labels). At most ``max_in_flight`` frames are in flight
(beyond: Overloaded, RESOURCE_EXHAUSTED); each frame's remaining time goes to the server as
its request timeout and bounds the wait (a call that ends past it: AnswerTimeout); an
unreachable or failing server is ServingFailure (INTERNAL), never a hang: every connection
and read has a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from controller.serving.cloud_model import Prediction, predictions_from, preprocess
from controller.serving.errors import AnswerTimeout, Overloaded, ServingFailure
from controller.serving.plan import ServingPlan
from edgefleet.modelmeta import Preprocessing

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # the longest a frame may ask for (offload_servicer.MAX_FRAME_TIMEOUT_S)


class TritonModel:
    """Predictor for model ``name`` on the server at ``url`` (``host:port``)."""

    def __init__(
        self,
        url: str,
        name: str,
        preprocessing: Preprocessing,
        model_id: str,
        labels: Sequence[str] = (),
        temperature: float = 1.0,
        outputs_are_logits: bool = True,
        input_name: str = "input",
        output_name: str = "output",
        max_in_flight: int = 64,
    ) -> None:
        self.url, self.name = url, name
        self.preprocessing = preprocessing
        self.model_id = model_id
        self.labels = tuple(labels)
        self.temperature = temperature
        self.outputs_are_logits = outputs_are_logits
        self.input_name, self.output_name = input_name, output_name
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self.max_in_flight = max_in_flight
        self._local = threading.local()  # a tritonclient client is not shared between threads
        self.calls = 0  # answered

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.size

    def check_ready(self) -> None:
        """ServingFailure unless the server says the model is ready."""
        try:
            ready = self._client().is_model_ready(self.name)
        except Exception as exc:
            raise ServingFailure(f"Triton at {self.url}: {exc}") from exc
        if not ready:
            raise ServingFailure(f"Triton at {self.url} has no ready model {self.name!r}")

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        if timeout_s is not None and timeout_s <= 0:
            raise AnswerTimeout(f"no time left to answer with {self.model_id}")
        tensor = preprocess(frame, self.preprocessing)
        if not self._slots.acquire(blocking=False):
            raise Overloaded(f"{self.max_in_flight} frames in flight to Triton for {self.model_id}")
        try:
            start = time.perf_counter()
            out = self._infer(tensor, timeout_s)
            took = time.perf_counter() - start
        finally:
            self._slots.release()
        if timeout_s is not None and took > timeout_s:
            raise AnswerTimeout(f"Triton answered {self.model_id} past the frame's deadline")
        self.calls += 1
        return predictions_from(
            out, self.model_id, self.labels, self.temperature, self.outputs_are_logits,
            took * 1000.0,
        )[0]  # fmt: skip

    def _infer(self, tensor: np.ndarray, timeout_s: float | None) -> np.ndarray:
        import tritonclient.http as triton_http
        from tritonclient.utils import InferenceServerException

        request = triton_http.InferInput(self.input_name, list(tensor.shape), "FP32")
        request.set_data_from_numpy(tensor, binary_data=True)
        wanted = triton_http.InferRequestedOutput(self.output_name, binary_data=True)
        micros = None if timeout_s is None else max(1, int(timeout_s * 1e6))
        try:
            result = self._client().infer(
                self.name, inputs=[request], outputs=[wanted], timeout=micros
            )
        except InferenceServerException as exc:
            if "429" in str(exc.status()) or "unavailable" in str(exc).lower():
                raise Overloaded(f"Triton at {self.url} refused {self.model_id}: {exc}") from exc
            raise ServingFailure(f"Triton at {self.url} failed {self.model_id}: {exc}") from exc
        except Exception as exc:  # connection refused/reset, read timeout (gevent's own types)
            if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc):
                raise AnswerTimeout(f"no answer from Triton at {self.url}: {exc}") from exc
            raise ServingFailure(f"Triton at {self.url}: {type(exc).__name__}: {exc}") from exc
        out = result.as_numpy(self.output_name)
        if out is None:
            raise ServingFailure(f"Triton at {self.url} sent no {self.output_name!r} output")
        return np.asarray(out)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.http as triton_http

            client = triton_http.InferenceServerClient(
                self.url, connection_timeout=CONNECT_TIMEOUT_S, network_timeout=READ_TIMEOUT_S
            )
            self._local.client = client
        return client

    def plan(self) -> ServingPlan:
        """What `model list` shows: not measured here, the server batches."""
        why = f"forwarded to Triton at {self.url} (model {self.name}), which batches"
        return ServingPlan(1, 0.0, "operator", why)

    def close(self) -> None:
        """Clients close with their threads."""
