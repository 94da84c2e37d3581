"""Audits: every device its own random positions, a busy audit is skipped (not a failed
offload), and the controller's desired audit fraction reaches the sampler."""

from __future__ import annotations

import json
import threading

from agent.inference import Agent, AgentConfig, FixedThreshold
from agent.inference.offload import CloudAnswer, OffloadFrame
from agent.inference.policy import AuditSampler, audit_rate_follows
from agent.runtime import ModelHolder
from agent.telemetry import TelemetryAggregator
from tests.integration.test_offload import holder  # noqa: F401  (a real tiny ONNX variant)
from tests.unit.test_runtime_models import frames


def test_audit_samplers_are_seeded_per_device() -> None:
    picks = [[AuditSampler(0.5).should_audit() for _ in range(64)] for _ in range(2)]
    assert picks[0] != picks[1]  # 2**-64 to fail by chance
    seeded = [[AuditSampler(0.5, seed=7).should_audit() for _ in range(64)] for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_desired_audit_fraction_is_followed_within_bounds() -> None:
    sampler = AuditSampler(0.02, seed=1)
    follow = audit_rate_follows(sampler)
    follow(json.dumps({"audit_fraction": 0.25}).encode())
    assert sampler.fraction == 0.25
    follow(json.dumps({"audit_fraction": 0.001}).encode())  # never below the device's own
    assert sampler.fraction == 0.02
    follow(b"not json")
    follow(json.dumps({"audit_fraction": 7}).encode())
    assert sampler.fraction == 1.0


class BlockingClient:
    """Holds every offload until released (a cloud that is slow to answer)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def offload(self, request: OffloadFrame, timeout_s: float) -> CloudAnswer:
        self.calls += 1
        self.release.wait(5.0)
        return CloudAnswer(request.edge_label, "x", 0.9, "cloud:1", 0.0, 1.0, 1.0, 100)


def test_an_audit_finding_every_slot_busy_is_skipped_not_failed(holder: ModelHolder) -> None:  # noqa: F811
    client = BlockingClient()
    telemetry = TelemetryAggregator("device-1", process_stats=lambda: (0, 0.0))
    config = AgentConfig(audit_fraction=1.0, max_in_flight=1, seed=0)
    agent = Agent(holder, FixedThreshold(0.0), client, telemetry, config)
    try:
        first = agent.infer(frames(1)[0], "a-0")  # takes the only slot
        second = agent.infer(frames(1)[0], "a-1")  # finds it busy
        assert first.audited and not second.audited and second.offload_error is None
        report = telemetry.report()
        assert report.audit_skipped_busy == 1 and report.offload_failures == 0
        assert report.audited == 1 and client.calls == 1
        assert dict(report.errors) == {}
    finally:
        client.release.set()
        agent.close()
