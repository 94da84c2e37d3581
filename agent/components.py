"""The agent's components, each with `start()` and `stop()`: gRPC heartbeats, MQTT presence,
the telemetry publisher (started with the first model), and the inference loop. The
assembly (agent.assembly) builds, starts and stops them."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import grpc
import numpy as np

from agent.controller_client import ControllerClient, DeviceRefused
from agent.inference.active import ActiveModel
from agent.inference.agent import Agent, FrameFailed, InferenceEvent, InferenceListener
from agent.inference.errors import NoModelYet
from agent.mqtt.client import AgentMqttClient
from agent.runtime.errors import FrameSourceError
from agent.runtime.skipper import FrameSkipper
from agent.runtime.sources import ImageDirectorySource
from agent.telemetry.aggregator import TelemetryAggregator
from agent.telemetry.publisher import TelemetryPublisher
from edgefleet import __version__

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class HeartbeatComponent:
    """gRPC heartbeats every interval; a refusal (revoked device) calls `on_refused`."""

    name = "heartbeat"

    def __init__(
        self, client: ControllerClient, interval_s: float, on_refused: Callable[[str], None]
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.on_refused = on_refused
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.heartbeat(__version__)
                self.ok += 1
            except DeviceRefused as exc:
                self.on_refused(str(exc))
                return
            except grpc.RpcError as exc:
                self.failed += 1
                code = exc.code().name if isinstance(exc, grpc.Call) else "?"
                log.warning("heartbeat failed (%s); will retry", code)
            self._stop.wait(self.interval_s)


class MqttComponent:
    name = "mqtt"

    def __init__(self, client: AgentMqttClient) -> None:
        self.client = client

    def start(self) -> None:
        self.client.start()

    def stop(self) -> None:
        self.client.stop()


class TelemetryComponent:
    """The telemetry publisher, started once the agent is running and has a model (a device
    without one has nothing to report); stopping it publishes the last partial interval."""

    name = "telemetry"

    def __init__(self, publisher: TelemetryPublisher, model: ActiveModel) -> None:
        self.publisher, self._model = publisher, model
        self._lock = threading.Lock()
        self._armed = self._started = False
        model.listeners.append(lambda _m: self._start_if_armed())

    def start(self) -> None:
        with self._lock:
            self._armed = True
        with contextlib.suppress(NoModelYet):
            self._model.current()
            self._start_if_armed()

    def _start_if_armed(self) -> None:
        with self._lock:
            if self._armed and not self._started:
                self._started = True
                self.publisher.start()

    def stop(self) -> None:
        with self._lock:
            self._armed = False
            started = self._started
        if started:
            self.publisher.stop()


FrameSource = Iterable[tuple[str, np.ndarray]]


class InferenceComponent:
    """Runs frames from `source` through the Agent on its own thread, once a model is there.

    Every answer and every failed frame goes to each of `listeners` in turn (the results
    writer, the OTA probation feed, tests). `fps` paces the loop (0 = as fast as the model
    goes); `loop` restarts the source at its end; bad frames and corrupt files are counted in
    telemetry and skipped. `done` is set when a non-looping source is exhausted.
    """

    name = "inference"

    def __init__(
        self,
        agent: Agent,
        model: ActiveModel,
        source: FrameSource,
        telemetry: TelemetryAggregator,
        fps: float = 0.0,
        loop: bool = False,
        skipper: FrameSkipper | None = None,
        listeners: Sequence[InferenceListener] = (),
    ) -> None:
        self.agent = agent
        self.model = model
        self.source = source
        self.telemetry = telemetry
        self.fps = fps
        self.loop = loop
        self.skipper = skipper
        self.listeners = list(listeners)
        self.frames = 0
        self.failed = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.agent.close()

    def _frames(self) -> Iterator[tuple[str, np.ndarray]]:
        counted = _corrupt(self.source)
        while not self._stop.is_set():
            for item in self.source:
                counted = self._count_corrupt(counted)
                if self._stop.is_set():
                    return
                yield item
            counted = self._count_corrupt(counted)  # undecodable files at the end too
            if not self.loop:
                return

    def _count_corrupt(self, counted: int) -> int:
        """Record the undecodable files the source skipped since ``counted``."""
        corrupt = _corrupt(self.source)
        for _ in range(corrupt - counted):
            self.telemetry.record_bad_frame("corrupt_image")
        return corrupt

    def _run(self) -> None:
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        while self.model.wait(0.2) is None:  # no model yet: OTA installs the first one
            if self._stop.is_set():
                self.done.set()
                return
        next_at = time.monotonic()
        try:
            for event in self.agent.run(self._frames(), self.skipper):
                if isinstance(event, FrameFailed):
                    self.failed += 1
                else:
                    self.frames += 1
                self._tell(event)
                if period:
                    next_at += period
                    delay = next_at - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_at = max(next_at, time.monotonic() - period)
        except FrameSourceError as exc:
            log.error("frame source failed: %s", exc)
            self.telemetry.record_error("source")
        except Exception:  # the daemon (heartbeats, telemetry) must outlive the loop
            log.exception("inference loop failed")
            self.telemetry.record_error("inference_loop")
        finally:
            self.done.set()
            log.info("inference loop ended after %d frames (%d failed)", self.frames, self.failed)

    def _tell(self, event: InferenceEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # one broken listener must not starve the others or the loop
                log.exception("inference listener %r failed", listener)


def _corrupt(source: FrameSource) -> int:
    """Undecodable files an image directory has skipped so far (other sources have none)."""
    return source.corrupt if isinstance(source, ImageDirectorySource) else 0
