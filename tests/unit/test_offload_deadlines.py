"""The server-side deadlines of the OffloadService: a unary call's margin, a stream frame's
allowance for the time answers take to leave (controller.grpc.offload_servicer)."""

from __future__ import annotations

import pytest

from controller.grpc.offload_servicer import ReplyLag, frame_timeout, unary_timeout
from controller.serving.errors import MalformedFrame
from edgefleet.v1 import inference_pb2


def test_the_reply_lag_allowance_follows_the_tail_of_recent_answers() -> None:
    lag = ReplyLag()
    for _ in range(200):
        lag.record(0.0002)
    quiet = lag.seconds
    for i in range(200):
        lag.record(0.040 if i % 4 == 0 else 0.002)  # a loaded server: one answer in 4 waits
    assert quiet < 0.001 and 0.03 < lag.seconds < 0.12


def test_a_stream_frame_deadline_is_its_own_less_the_lag_never_past_the_stream() -> None:
    frame = inference_pb2.OffloadRequest(timeout_ms=200)
    assert frame_timeout(frame, None) == pytest.approx(0.2)
    assert frame_timeout(frame, 0.1) == pytest.approx(0.1)  # the stream ends sooner
    assert frame_timeout(frame, None, reply_lag_s=0.05) == pytest.approx(0.15)
    assert frame_timeout(frame, None, reply_lag_s=5.0) == pytest.approx(0.15)  # a quarter
    with pytest.raises(MalformedFrame):
        frame_timeout(inference_pb2.OffloadRequest(), None)


def test_a_unary_deadline_keeps_a_margin_for_the_answer() -> None:
    assert unary_timeout(None) is None
    assert unary_timeout(0.25) == pytest.approx(0.25 - 0.0625)
    assert unary_timeout(0.05) == pytest.approx(0.03)  # at least 20 ms
    assert unary_timeout(10.0) == pytest.approx(9.9)  # at most 100 ms
