"""Offload lanes: long-lived OffloadStream calls carrying one frame at a time each.

A lane is one bidirectional stream. ``exchange`` writes a frame and waits (at most its
timeout) for the answer with the same sequence number; a reader thread takes the stream's
answers off the wire. A frame that timed out leaves the lane open but not ready: the server
ends that frame at its own (shorter) deadline, and until its late answer (recognised by its
sequence, dropped) has come, no frame is queued behind it. A lane whose stream ended is
retired; ``LanePool`` opens new ones as needed, at most ``max_lanes`` at a time.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator

import grpc

from edgefleet.v1 import inference_pb2, inference_pb2_grpc

_END = object()  # the request iterator's end marker


class LaneBroken(Exception):
    """The stream ended before the frame's answer came; `code` says how (UNIMPLEMENTED:
    the controller has no OffloadStream; RESOURCE_EXHAUSTED at open: too many streams)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class LaneTimeout(Exception):
    """No answer within the frame's timeout (the lane is retired)."""


class Lane:
    def __init__(self, stub: inference_pb2_grpc.OffloadServiceStub) -> None:
        # a frame, one the server has not read yet (after a timeout) and the end marker
        self._requests: queue.Queue[object] = queue.Queue(maxsize=3)
        self._replies: queue.Queue[inference_pb2.OffloadResponse | LaneBroken] = queue.Queue(8)
        self._sequence = itertools.count(1)
        self._late: int | None = None  # the sequence of a frame that timed out, unanswered
        self.alive = True
        self._call = stub.OffloadStream(self._outgoing())
        self._reader = threading.Thread(target=self._read, name="offload-lane", daemon=True)
        self._reader.start()

    def exchange(
        self, message: inference_pb2.OffloadRequest, timeout_s: float
    ) -> inference_pb2.OffloadResponse:
        """Send `message` (its sequence is set here) and return its answer; LaneTimeout after
        `timeout_s`, LaneBroken when the stream ends first."""
        message.sequence = next(self._sequence)
        try:
            self._requests.put_nowait(message)
        except queue.Full:  # the server has not read the frames before: give this lane up
            self.cancel()
            raise LaneBroken(grpc.StatusCode.UNAVAILABLE, "the server reads no frames") from None
        end = time.monotonic() + max(timeout_s, 0.0)
        while True:
            try:
                reply = self._replies.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                self._late = message.sequence  # its answer may come yet: dropped then
                if not self._replies.empty():  # it came just now
                    continue
                raise LaneTimeout(f"no answer within {timeout_s:.3f}s") from None
            if isinstance(reply, LaneBroken):
                self.alive = False
                raise reply
            if reply.sequence == message.sequence:
                if self._late == reply.sequence:  # came just as the wait ran out
                    self._late = None
                return reply
            # the late answer to an earlier frame of this lane: dropped

    @property
    def ready(self) -> bool:
        """Open, and no earlier frame still on the server."""
        return self.alive and self._late is None

    def close(self) -> None:
        """End the stream (the server finishes its current frame and sees the end)."""
        if not self.alive:
            return
        self.alive = False
        try:
            self._requests.put_nowait(_END)
        except queue.Full:
            self._call.cancel()

    def cancel(self) -> None:
        self.alive = False
        self._call.cancel()

    def _outgoing(self) -> Iterator[inference_pb2.OffloadRequest]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            assert isinstance(item, inference_pb2.OffloadRequest)
            yield item

    def _read(self) -> None:
        try:
            for reply in self._call:
                if reply.sequence == self._late:  # the answer nobody waits for any more
                    self._late = None
                    continue
                self._put(reply)
            broken = LaneBroken(grpc.StatusCode.OK, "the stream ended")
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            broken = LaneBroken(code or grpc.StatusCode.UNKNOWN, details or "")
        self.alive = False
        self._put(broken)

    def _put(self, item: inference_pb2.OffloadResponse | LaneBroken) -> None:
        try:
            self._replies.put_nowait(item)
        except queue.Full:  # a server answering frames never sent: end the lane
            self._call.cancel()


class LanePool:
    """Idle lanes to reuse, at most `max_lanes` open (idle or busy) at once."""

    def __init__(self, stub: inference_pb2_grpc.OffloadServiceStub, max_lanes: int) -> None:
        self._stub = stub
        self._max = max_lanes
        self._idle: list[Lane] = []
        self._open = 0
        self._lock = threading.Lock()

    def take(self) -> Lane | None:
        """A ready idle lane or a new one; None when `max_lanes` are busy or not ready."""
        with self._lock:
            dead = [lane for lane in self._idle if not lane.alive]
            self._open -= len(dead)
            self._idle = [lane for lane in self._idle if lane.alive]
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i].ready:
                    return self._idle.pop(i)
            if self._open >= self._max:
                return None
            self._open += 1
        try:
            return Lane(self._stub)
        except Exception:
            with self._lock:
                self._open -= 1
            raise

    def give_back(self, lane: Lane) -> None:
        with self._lock:
            if lane.alive:
                self._idle.append(lane)
            else:
                self._open -= 1

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for lane in idle:
            lane.close()
