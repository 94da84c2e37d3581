"""The daemon's components, each with `start()` and `stop()`: gRPC heartbeats, MQTT presence,
and the inference loop. (The telemetry publisher lives in agent.telemetry.publisher.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import grpc
import numpy as np

from agent.controller_client import ControllerClient, DeviceRefused
from agent.inference.agent import Agent
from agent.runtime.errors import FrameSourceError
from agent.runtime.skipper import FrameSkipper
from agent.telemetry.aggregator import TelemetryAggregator
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


FrameSource = Iterable[tuple[str, np.ndarray]]


class InferenceComponent:
    """Runs frames from `source` through the Agent on its own thread.

    `fps` paces the loop (0 = as fast as the model goes); `loop` restarts the source at its
    end; bad frames and corrupt files are counted in telemetry and skipped. `done` is set
    when a non-looping source is exhausted.
    """

    name = "inference"

    def __init__(
        self,
        agent: Agent,
        source: FrameSource,
        telemetry: TelemetryAggregator,
        fps: float = 0.0,
        loop: bool = False,
        skipper: FrameSkipper | None = None,
        on_result: Callable[[object], None] | None = None,
    ) -> None:
        self.agent = agent
        self.source = source
        self.telemetry = telemetry
        self.fps = fps
        self.loop = loop
        self.skipper = skipper
        self.on_result = on_result
        self.frames = 0
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
        while not self._stop.is_set():
            corrupt_before = int(getattr(self.source, "corrupt", 0))
            for item in self.source:
                corrupt = int(getattr(self.source, "corrupt", 0))
                if corrupt > corrupt_before:  # the source skipped undecodable files
                    for _ in range(corrupt - corrupt_before):
                        self.telemetry.record_bad_frame("corrupt_image")
                    corrupt_before = corrupt
                if self._stop.is_set():
                    return
                yield item
            if not self.loop:
                return

    def _run(self) -> None:
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        next_at = time.monotonic()
        try:
            for result in self.agent.run(self._frames(), self.skipper):
                self.frames += 1
                if self.on_result is not None:
                    self.on_result(result)
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
            log.info("inference loop ended after %d frames", self.frames)
