"""The pure update machine: every phase, retries with backoff, refusals."""

from __future__ import annotations

import pytest

from agent.ota import machine as m
from agent.ota.local import make_target
from edgefleet.errors import InvalidInput

CFG = m.UpdateConfig(
    max_retries=2, backoff_base=1.0, probation_seconds=10.0, latency_budget_ms=50.0
)


def target(data: bytes = b"x" * 100) -> m.TargetInfo:
    return m.TargetInfo.from_dict(make_target(data))


def run(state: m.UpdateState, *events: m.Event) -> tuple[m.UpdateState, list[m.Action]]:
    out: list[m.Action] = []
    for e in events:
        state, actions = m.transition(CFG, state, e)
        out.extend(actions)
    return state, out


def kinds(actions: list[m.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_happy_path_to_commit() -> None:
    t = target()
    s, acts = run(m.UpdateState(current_variant="demo:0:old"), m.DesiredState(t, 0.0))
    assert s.phase == "downloading" and m.Fetch(t, 0) in acts
    s, acts = run(s, m.ChunkReceived(60), m.ChunkReceived(40), m.DownloadComplete(1.0))
    assert s.phase == "verifying" and m.Verify(t) in acts
    s, acts = run(s, m.VerificationOk())
    assert s.phase == "installing" and m.WriteSlot(t) in acts
    s, acts = run(s, m.WriteOk("B"))
    assert s.phase == "smoke_testing" and m.RunSmokeTest(t) in acts
    s, acts = run(s, m.SmokeOk())
    assert s.phase == "activating" and m.Activate(t) in acts
    s, acts = run(s, m.Activated(5.0))
    assert s.phase == "probation" and s.probation_until == 15.0
    s, acts = run(s, m.ProbationMetrics(frames=100, error_rate=0.0, latency_ms=20.0), m.Timer(10.0))
    assert s.phase == "probation" and acts == []
    s, acts = run(s, m.Timer(15.0))
    assert s.phase == "committed" and m.Commit(t) in acts
    assert s.current_variant == t.variant_id
    assert m.Report("committed", t.variant_id, "") in acts
    # The same desired state again is a no-op.
    assert run(s, m.DesiredState(t, 20.0)) == (s, [])


def test_resume_from_offset_and_backoff_then_give_up() -> None:
    t = target()
    s, acts = run(m.UpdateState(), m.DesiredState(t, 0.0, resume_offset=30))
    assert m.Fetch(t, 30) in acts
    s, acts = run(s, m.ChunkReceived(20), m.DownloadFailed("connection reset", 1.0))
    assert s.phase == "downloading" and acts == [m.Wait(2.0)]
    s, acts = run(s, m.Timer(1.5))
    assert acts == []  # not yet
    s, acts = run(s, m.Timer(2.0))
    assert acts == [m.Fetch(t, 50)]  # resumes where it stopped
    s, acts = run(s, m.DownloadComplete(3.0))  # truncated: 50 of 100
    assert acts == [m.Wait(5.0)] and "truncated" in s.reason  # backoff doubled
    s, acts = run(s, m.Timer(5.0), m.DownloadFailed("timeout", 6.0))
    assert s.phase == "failed" and "gave up after 2 retries" in s.reason
    assert kinds(acts)[-1] == "Report"


def test_progress_resets_retry_budget() -> None:
    s, _ = run(m.UpdateState(), m.DesiredState(target(), 0.0))
    for i in range(5):
        s, _ = run(s, m.DownloadFailed("flaky", float(i)), m.Timer(100.0 + i), m.ChunkReceived(1))
    assert s.phase == "downloading" and s.offset == 5


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([m.ChunkReceived(101)], "longer than the target"),
        (
            [m.ChunkReceived(100), m.DownloadComplete(0.0), m.VerificationFailed("bad signature")],
            "bad signature",
        ),
        ([m.DownloadFailed("disk full", 0.0, retryable=False)], "disk full"),
        (
            [
                m.ChunkReceived(100),
                m.DownloadComplete(0.0),
                m.VerificationOk(),
                m.WriteFailed("ENOSPC"),
            ],
            "install failed",
        ),
    ],
)
def test_refusals_fail_and_discard(events: list[m.Event], reason: str) -> None:
    t = target()
    s, acts = run(m.UpdateState(current_variant="old"), m.DesiredState(t, 0.0), *events)
    assert s.phase == "failed" and reason in s.reason
    assert m.DiscardDownload(t) in acts
    assert s.current_variant == "old"
    assert run(s, m.DesiredState(t, 1.0)) == (s, [])  # a refused target is not retried in a loop
    s2, _ = run(s, m.DesiredState(target(b"y" * 10), 2.0))
    assert s2.phase == "downloading"  # a different target is tried


def test_smoke_failure_never_activates() -> None:
    s, acts = run(
        m.UpdateState(),
        m.DesiredState(target(), 0.0),
        m.ChunkReceived(100),
        m.DownloadComplete(0.0),
        m.VerificationOk(),
        m.WriteOk("B"),
        m.SmokeFailed("NaN in output"),
    )
    assert s.phase == "failed" and "NaN" in s.reason
    assert not any(isinstance(a, m.Activate) for a in acts)


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        (m.ProbationMetrics(10, crashed=True), "crashed"),
        (m.ProbationMetrics(10, error_rate=0.5), "error rate"),
        (m.ProbationMetrics(10, latency_ms=80.0), "latency 80.0 ms > budget 50.0 ms"),
    ],
)
def test_probation_failure_rolls_back(metrics: m.ProbationMetrics, why: str) -> None:
    t = target()
    s, _ = run(
        m.UpdateState(current_variant="old"),
        m.DesiredState(t, 0.0),
        m.ChunkReceived(100),
        m.DownloadComplete(0.0),
        m.VerificationOk(),
        m.WriteOk("B"),
        m.SmokeOk(),
        m.Activated(0.0),
    )
    s, acts = run(s, metrics)
    assert s.phase == "rolled_back" and why in s.reason
    assert isinstance(acts[0], m.Rollback) and s.current_variant == "old"


def test_new_target_mid_download_discards_old() -> None:
    a, b = target(b"a" * 10), target(b"b" * 20)
    s, _ = run(m.UpdateState(), m.DesiredState(a, 0.0), m.ChunkReceived(5))
    s, acts = run(s, m.DesiredState(b, 1.0))
    assert m.DiscardDownload(a) in acts and m.Fetch(b, 0) in acts and s.target == b


def test_out_of_phase_events_are_ignored() -> None:
    s = m.UpdateState()
    for e in (m.VerificationOk(), m.ChunkReceived(3), m.Activated(0.0), m.Timer(9.0)):
        assert run(s, e) == (s, [])


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "target",
        {},
        {"length": 3},
        {**make_target(b"abc"), "length": -1},
        {**make_target(b"abc"), "length": True},
        {**make_target(b"abc"), "hashes": {"sha256": "zz"}},
        {**make_target(b"abc"), "path": "../../etc/passwd"},
        {**make_target(b"abc"), "custom": {"model": "x"}},
        {**make_target(b"abc"), "custom": {**make_target(b"abc")["custom"], "file": "../evil"}},
    ],
)
def test_garbage_targets_rejected(garbage: object) -> None:
    with pytest.raises(InvalidInput):
        m.TargetInfo.from_dict(garbage)


def test_a_download_that_gave_up_is_tried_again_in_bounded_rounds() -> None:
    cfg = m.UpdateConfig(max_retries=0, retry_rounds=2, round_backoff_s=30.0)
    t = target()
    s, _ = m.transition(cfg, m.UpdateState(), m.DesiredState(t, 0.0))
    s, _ = m.transition(cfg, s, m.ChunkReceived(40))
    now, delays = 0.0, []
    for _ in range(2):
        s, acts = m.transition(cfg, s, m.DownloadFailed("resume failed", now))
        assert s.phase == "failed" and s.retry_at is not None and kinds(list(acts)) == ["Report"]
        assert acts[0] == m.Report("downloading", t.variant_id, s.reason)  # still trying
        delays.append(s.retry_at - now)
        assert m.transition(cfg, s, m.Timer(s.retry_at - 1))[1] == ()  # not yet
        assert m.transition(cfg, s, m.DesiredState(t, now))[1] == ()  # same target: waits
        now = s.retry_at
        s, acts = m.transition(cfg, s, m.Timer(now))
        assert s.phase == "downloading" and m.Fetch(t, 40) in acts  # resumes at its offset
    assert delays == [30.0, 60.0]
    s, acts = m.transition(cfg, s, m.DownloadFailed("resume failed", now))
    assert s.phase == "failed" and s.retry_at is None  # rounds spent: failed for good
    assert [a.phase for a in acts if isinstance(a, m.Report)] == ["failed"]
    assert m.transition(cfg, s, m.Timer(now + 1e6))[1] == ()
