"""One retry mechanism (edgefleet.retry: a backoff schedule + tenacity) and every loop that
uses it, with an injected sleep: the agent's gRPC call retries, the enrollment CA fetch,
`fleet watch` while the controller is away, and the OTA machine's pure "retry at"."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import pytest

from agent.controller_client import CALL_BACKOFF, with_retries
from agent.enroll import _fetch_ca
from agent.errors import AgentError, ControllerUnreachable
from agent.ota import machine as m
from controller.cli.fleet import WATCH_BACKOFF, fetch_until_answered
from edgefleet.errors import Unavailable
from edgefleet.retry import Backoff


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "boom") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def failing(errors: list[BaseException], answer: object = "ok") -> Callable[[], object]:
    """A call that raises ``errors`` one by one, then answers; counts its calls."""

    def call() -> object:
        call.calls += 1  # type: ignore[attr-defined]
        if errors:
            raise errors.pop(0)
        return answer

    call.calls = 0  # type: ignore[attr-defined]
    return call


# -- the schedule ---------------------------------------------------------------------------
def test_backoff_schedule_doubles_to_its_cap_and_never_overflows() -> None:
    b = Backoff(first_s=0.5, max_s=15.0)
    assert [b.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert b.delay(0) == 0.5 and b.delay(5000) == 15.0  # hours of `fleet watch`: no OverflowError
    assert b.delay(3, spread=1.2) == pytest.approx(2.4)
    with pytest.raises(ValueError):
        Backoff(first_s=-1, max_s=1)
    with pytest.raises(ValueError):
        Backoff(first_s=1, max_s=2, jitter=1.0)


def test_ota_backoff_is_the_shared_schedule_unjittered() -> None:
    config = m.UpdateConfig(backoff_base=1.0, backoff_max=60.0)
    assert [config.backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert config.backoff(10_000) == 60.0
    assert config.backoff(3) == config.backoff(3)  # pure: same input, same delay


# -- the agent's gRPC call retries ----------------------------------------------------------
def test_transient_grpc_failures_are_retried_with_jittered_bounded_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slept: list[float] = []
    call = failing([FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(6)])
    caplog.set_level(logging.WARNING)
    assert with_retries(call, what="enroll", attempts=7, sleep=slept.append) == "ok"
    assert call.calls == 7  # type: ignore[attr-defined]
    for n, delay in enumerate(slept, start=1):
        assert 0.8 * CALL_BACKOFF.delay(n) <= delay <= 1.2 * CALL_BACKOFF.delay(n)
    assert max(slept) <= 1.2 * CALL_BACKOFF.max_s
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6
    assert lines[0].startswith("enroll: controller unreachable (UNAVAILABLE: boom), retrying in")
    assert lines[0].endswith("(attempt 1/7)")


def test_retry_budget_runs_out_as_controller_unreachable() -> None:
    slept: list[float] = []
    call = failing([FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED) for _ in range(3)])
    with pytest.raises(ControllerUnreachable, match=r"enroll: .*DEADLINE_EXCEEDED.* 3 attempts"):
        with_retries(call, what="enroll", attempts=3, sleep=slept.append)
    assert call.calls == 3 and len(slept) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT]
)
def test_refusals_are_not_retried(code: grpc.StatusCode) -> None:
    slept: list[float] = []
    call = failing([FakeRpcError(code)])
    with pytest.raises(FakeRpcError):
        with_retries(call, what="enroll", attempts=5, sleep=slept.append)
    assert call.calls == 1 and slept == []  # type: ignore[attr-defined]


# -- enrollment's CA fetch (plain TLS, not gRPC) --------------------------------------------
def test_ca_fetch_retries_connection_errors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fetch = failing([ConnectionError("refused"), ConnectionError("refused")], b"CA")
    monkeypatch.setattr("agent.enroll.fetch_pinned_ca", lambda *_a: fetch())
    slept: list[float] = []
    assert _fetch_ca("127.0.0.1:1", "pin", 3, 1.0, slept.append) == b"CA"
    assert len(slept) == 2 and 0.4 <= slept[0] <= 0.6

    fetch = failing([ConnectionError("refused")] * 2, b"CA")
    with pytest.raises(ControllerUnreachable, match=r"at 127\.0\.0\.1:1 after 2 attempts"):
        _fetch_ca("127.0.0.1:1", "pin", 2, 1.0, slept.append)

    fetch = failing([AgentError("does not present the CA pinned in the token")], b"CA")
    slept.clear()
    with pytest.raises(AgentError, match="pinned"):
        _fetch_ca("127.0.0.1:1", "pin", 5, 1.0, slept.append)
    assert slept == []  # a wrong pin is final


# -- `fleet watch` while the controller is away ---------------------------------------------
def test_fleet_watch_waits_1_2_4_up_to_30_s_until_the_controller_answers() -> None:
    slept: list[float] = []
    said: list[tuple[str, float, int]] = []
    fetch = failing([Unavailable("controller restarting") for _ in range(8)], "status")
    answer, failures = fetch_until_answered(
        fetch, lambda exc, delay, n: said.append((str(exc), delay, n)), slept.append
    )
    assert (answer, failures) == ("status", 8)
    assert slept == [1, 2, 4, 8, 16, 30, 30, 30] == [WATCH_BACKOFF.delay(n) for n in range(1, 9)]
    assert said[0] == ("controller restarting", 1.0, 1) and said[-1][2] == 8

    assert fetch_until_answered(failing([], "again"), lambda *_: None, slept.append) == ("again", 0)


def test_fleet_watch_raises_anything_but_unreachable_at_once() -> None:
    slept: list[float] = []
    with pytest.raises(PermissionError):
        fetch_until_answered(failing([PermissionError("bad token")]), lambda *_: None, slept.append)
    assert slept == []
