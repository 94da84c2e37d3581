"""The pure rollout engine, driven step by step with a simulated fleet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from controller.rollout import (
    AssignVariant,
    CohortMetrics,
    Command,
    DeviceReport,
    GateInputs,
    InvalidGate,
    InvalidRollout,
    Observation,
    RevertDevice,
    RolloutSpec,
    RolloutState,
    StepResult,
    TargetDevice,
    action_from_dict,
    action_to_dict,
    describe,
    initial_state,
    stage_size,
    step,
)

NEW = "cam:2:onnx-int8"
OLD = "cam:1:onnx-fp32"


def healthy_metrics() -> GateInputs:
    values = {"p95_latency": 14.1, "agreement": 0.96, "error_rate": 0.0, "offload_rate": 0.1}
    base = {"p95_latency": 14.0, "agreement": 0.96, "error_rate": 0.0, "offload_rate": 0.1}
    return GateInputs(CohortMetrics(values, 5000, 20), CohortMetrics(base, 5000, 20))


def bad_latency_metrics() -> GateInputs:
    m = healthy_metrics()
    return GateInputs(CohortMetrics({**m.canary.values, "p95_latency": 30.0}, 5000, 20), m.control)


def spec(**kw: object) -> RolloutSpec:
    base: dict[str, object] = {
        "rollout_id": "r1",
        "model": "cam",
        "version": 2,
        "stages": (0.05, 0.25, 1.0),
        "min_devices": 1,
        "soak_seconds": 60.0,
        "max_concurrent_downloads": 100,
        "min_samples": 100,
    }
    base.update(kw)
    return RolloutSpec(**base)  # type: ignore[arg-type]


@dataclass
class Fleet:
    """Simulated devices: they answer assignments and reverts on the next step."""

    spec: RolloutSpec
    n: int = 20
    profiles: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str | None] = field(default_factory=lambda: {"cpu": NEW})
    fail: set[str] = field(default_factory=set)
    auto_report: bool = True
    state: RolloutState = field(default_factory=initial_state)
    now: float = 0.0
    inbox: list[DeviceReport] = field(default_factory=list)
    log: list[StepResult] = field(default_factory=list)
    running: dict[str, str | None] = field(default_factory=dict)  # what devices run now

    def __post_init__(self) -> None:
        for i in range(self.n):
            self.profiles.setdefault(f"d{i:02d}", "cpu")

    def tick(
        self, dt: float = 1.0, metrics: GateInputs | None = None, commands: tuple[Command, ...] = ()
    ) -> StepResult:
        self.now += dt
        obs = Observation(
            now=self.now,
            targeted=tuple(
                TargetDevice(d, p, self.running.get(d, OLD)) for d, p in self.profiles.items()
            ),
            variants=self.variants,
            reports=tuple(self.inbox),
            metrics=metrics,
            commands=commands,
        )
        self.inbox = []
        result = step(self.spec, self.state, obs)
        # Every transition survives a JSON round trip, as the database will store it.
        self.state = RolloutState.from_dict(json.loads(json.dumps(result.state.to_dict())))
        assert self.state == result.state
        self.log.append(result)
        if self.auto_report:
            for a in result.actions:
                if isinstance(a, AssignVariant):
                    status = "failed" if a.device_id in self.fail else "healthy"
                    self.inbox.append(DeviceReport(a.device_id, status, a.variant_id, "simulated"))
                    if status == "healthy":
                        self.running[a.device_id] = a.variant_id
                elif isinstance(a, RevertDevice):
                    self.inbox.append(DeviceReport(a.device_id, "rolled_back", a.variant_id))
                    self.running[a.device_id] = a.variant_id
        return result

    def run_until(self, phase: str, metrics: GateInputs | None, limit: int = 200) -> None:
        for _ in range(limit):
            if self.state.phase == phase:
                return
            self.tick(10.0, metrics)
        raise AssertionError(f"never reached {phase}: {describe(self.state, self.spec)}")

    def assigned(self) -> list[str]:
        return [a.device_id for r in self.log for a in r.actions if isinstance(a, AssignVariant)]


def test_stage_size_is_ceil_with_minimum() -> None:
    s = spec(min_devices=2)
    assert [stage_size(s, i, 20) for i in range(3)] == [2, 5, 20]
    assert stage_size(spec(), 0, 21) == 2  # ceil(1.05)
    assert stage_size(spec(min_devices=50), 0, 20) == 20


def test_three_stage_rollout_completes_with_healthy_metrics() -> None:
    fleet = Fleet(spec())
    fleet.run_until("completed", healthy_metrics())
    assert sorted(fleet.assigned()) == sorted(fleet.profiles)  # each device exactly once
    assert fleet.state.count("healthy") == 20
    reasons = [h.reason for h in fleet.state.history]
    assert any("stage 1/3: 1 of 20 devices" in r for r in reasons)
    assert any(
        "stage 2/3: 5 of 20 devices" in r and "p95_latency 14.1 ms <= 16.8 ms passed" in r
        for r in reasons
    )
    assert "completed" in describe(fleet.state, fleet.spec)
    # Stage sizes grew 1 -> 5 -> 20 in assignment order.
    stages = [fleet.state.device(d).stage for d in fleet.assigned()]
    assert stages == sorted(stages) and stages.count(0) == 1 and stages.count(1) == 4


def test_soak_must_elapse_before_gates() -> None:
    fleet = Fleet(spec(soak_seconds=100.0))
    fleet.tick(1.0, healthy_metrics())
    fleet.tick(1.0, healthy_metrics())
    assert fleet.state.phase == "soaking"
    fleet.tick(50.0, healthy_metrics())
    assert fleet.state.phase == "soaking" and fleet.state.stage_index == 0
    fleet.tick(60.0, healthy_metrics())
    assert fleet.state.stage_index == 1


def test_failing_gate_halts_and_rolls_back_every_device() -> None:
    fleet = Fleet(spec(stages=(0.25, 1.0)))
    fleet.run_until("rolling_back", bad_latency_metrics())
    phases = [h.phase for h in fleet.state.history]
    assert "halted" in phases
    halted = next(h for h in fleet.state.history if h.phase == "halted")
    assert "p95_latency 30 ms <= 16.8 ms failed" in halted.reason
    reverts = [a for a in fleet.log[-1].actions if isinstance(a, RevertDevice)]
    assert len(reverts) == 5 and all(a.variant_id == "cam:1:onnx-fp32" for a in reverts)
    fleet.tick()
    assert fleet.state.phase == "rolled_back"
    assert fleet.state.count("rolled_back") == 5 and fleet.state.count("healthy") == 0


def test_failing_gate_without_auto_rollback_only_halts() -> None:
    fleet = Fleet(spec(auto_rollback=False))
    fleet.run_until("halted", bad_latency_metrics())
    fleet.tick(10.0, bad_latency_metrics())
    assert fleet.state.phase == "halted"
    assert not any(isinstance(a, RevertDevice) for r in fleet.log for a in r.actions)


def test_insufficient_data_waits_and_records_once() -> None:
    fleet = Fleet(spec())
    thin = GateInputs(
        CohortMetrics(healthy_metrics().canary.values, 10, 1), healthy_metrics().control
    )
    for _ in range(20):
        fleet.tick(10.0, thin)
    assert fleet.state.phase == "soaking" and fleet.state.stage_index == 0
    waiting = [h for h in fleet.state.history if "waiting for data" in h.reason]
    assert len(waiting) == 1 and "10 of 100 frames" in waiting[0].reason
    assert all(g.status == "insufficient" for g in fleet.state.last_gates)
    fleet.tick(10.0, None)
    assert "no cohort metrics" in fleet.state.history[-1].reason
    fleet.tick(10.0, healthy_metrics())
    assert fleet.state.stage_index == 1


def test_pause_resume_promote_abort_rollback() -> None:
    fleet = Fleet(spec(soak_seconds=100.0))
    fleet.tick()
    fleet.tick()
    assert fleet.state.phase == "soaking"
    fleet.tick(10.0, commands=(Command("pause", "investigating"),))
    assert fleet.state.phase == "paused"
    fleet.tick(500.0, healthy_metrics())  # soak time does not run while paused
    assert fleet.state.phase == "paused" and fleet.state.stage_index == 0
    fleet.tick(1.0, commands=(Command("resume"),))
    assert fleet.state.phase == "soaking"
    fleet.tick(50.0, healthy_metrics())
    assert fleet.state.stage_index == 0  # 10 + 50 s soaked of 100
    fleet.tick(1.0, commands=(Command("promote", "looks fine"),))
    assert fleet.state.stage_index == 1
    assert "gates skipped" in fleet.state.history[-1].reason
    rejected = fleet.tick(1.0, commands=(Command("resume"),))
    assert any("cannot resume" in getattr(a, "message", "") for a in rejected.actions)
    fleet.tick(1.0, commands=(Command("rollback", "customer complaint"),))
    assert fleet.state.phase == "rolling_back"
    fleet.tick()
    assert fleet.state.phase == "rolled_back"
    assert fleet.state.count("healthy", "installed", "assigned", "downloading") == 0

    other = Fleet(spec())
    other.tick()
    other.tick(1.0, commands=(Command("abort", "wrong model"),))
    assert other.state.phase == "aborted"
    before = len(other.assigned())
    other.tick(100.0, healthy_metrics())
    assert len(other.assigned()) == before and other.state.phase == "aborted"


def test_devices_joining_mid_rollout_join_current_stage() -> None:
    fleet = Fleet(spec(stages=(0.5, 1.0)), n=4)
    fleet.tick()
    assert len(fleet.assigned()) == 2
    fleet.profiles["late"] = "cpu"
    fleet.profiles["late2"] = "cpu"
    result = fleet.tick()
    assert any("late joined at stage 1" in getattr(a, "message", "") for a in result.actions)
    # 6 eligible devices now: stage 1 covers ceil(3) = one more device.
    assert len(fleet.assigned()) == 3
    fleet.run_until("completed", healthy_metrics())
    assert fleet.state.device("late").state == "healthy"
    assert fleet.state.device("late2").state == "healthy"


def test_profile_without_variant_is_reported_not_skipped() -> None:
    fleet = Fleet(spec(), n=4)
    fleet.profiles["jetson-1"] = "jetson"
    result = fleet.tick()
    msgs = [getattr(a, "message", "") for a in result.actions]
    assert "device jetson-1: no variant for profile jetson" in msgs
    assert fleet.state.unsupported == {"jetson-1": "jetson"}
    assert "jetson-1 (profile jetson)" in describe(fleet.state)
    again = fleet.tick()  # reported once, kept in state
    assert not any("no variant" in getattr(a, "message", "") for a in again.actions)
    fleet.run_until("completed", healthy_metrics())
    assert "jetson-1" not in fleet.assigned()


def test_install_failure_rate_aborts() -> None:
    fleet = Fleet(spec(stages=(0.5, 1.0), min_devices=4, install_failure_threshold=0.2))
    fleet.fail = {"d00", "d01", "d02", "d03", "d04", "d05"}
    fleet.run_until("rolling_back", healthy_metrics())
    abort = next(h for h in fleet.state.history if "install failure rate" in h.reason)
    assert "aborted" in abort.reason
    fleet.tick()
    assert fleet.state.phase == "rolled_back"

    no_rb = Fleet(spec(min_devices=4, install_failure_threshold=0.2, auto_rollback=False))
    no_rb.fail = set(no_rb.profiles)
    no_rb.run_until("aborted", healthy_metrics())


def test_max_concurrent_downloads() -> None:
    fleet = Fleet(spec(stages=(1.0,), max_concurrent_downloads=3), n=10)
    fleet.auto_report = False
    first = fleet.tick()
    assigned = [a.device_id for a in first.actions if isinstance(a, AssignVariant)]
    assert len(assigned) == 3
    idle = fleet.tick()  # no reports: every slot still busy, nobody else assigned
    assert not any(isinstance(a, AssignVariant) for a in idle.actions)
    fleet.inbox = [DeviceReport(assigned[0], "downloading", NEW)]
    fleet.tick()
    assert fleet.state.count("assigned", "downloading") == 3
    fleet.inbox = [
        DeviceReport(assigned[0], "installed", NEW),
        DeviceReport(assigned[1], "healthy", NEW),
    ]
    nxt = fleet.tick()
    assert sum(isinstance(a, AssignVariant) for a in nxt.actions) == 2
    assert fleet.state.count("assigned", "downloading") == 3


def test_stale_reports_are_ignored() -> None:
    fleet = Fleet(spec(stages=(1.0,)), n=2)
    fleet.auto_report = False
    fleet.tick()
    fleet.inbox = [
        DeviceReport("d00", "failed", "cam:0:old"),
        DeviceReport("nobody", "healthy", NEW),
    ]
    fleet.tick()
    assert fleet.state.device("d00").state == "assigned"


def test_state_spec_and_actions_json_round_trip() -> None:
    fleet = Fleet(spec())
    fleet.run_until("soaking", healthy_metrics())
    fleet.tick(100.0, healthy_metrics())
    text = json.dumps(fleet.state.to_dict())
    assert RolloutState.from_dict(json.loads(text)) == fleet.state
    s = spec(gates=("error_rate <= 0.02",), selector={"site": "a"})
    assert RolloutSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    for r in fleet.log:
        for a in r.actions:
            assert action_from_dict(json.loads(json.dumps(action_to_dict(a)))) == a
    # A restarted controller continues from the decoded state exactly as before.
    obs = Observation(now=fleet.now + 1, targeted=(), variants={})
    decoded = RolloutState.from_dict(json.loads(text))
    assert step(fleet.spec, decoded, obs) == step(fleet.spec, fleet.state, obs)


def test_invalid_specs_and_dicts() -> None:
    with pytest.raises(InvalidGate):
        spec(gates=("latency <= eval(1)",))
    with pytest.raises(InvalidRollout):
        spec(stages=(0.5, 0.25, 1.0))
    with pytest.raises(InvalidRollout):
        spec(stages=(0.5,))
    with pytest.raises(InvalidRollout):
        RolloutState.from_dict({"phase": "exploded"})
    with pytest.raises(InvalidRollout):
        action_from_dict({"kind": "format_disk"})
    with pytest.raises(InvalidRollout):
        Command("reboot")


def test_rollback_with_downloads_in_flight_finishes_when_devices_answer() -> None:
    fleet = Fleet(spec(stages=(1.0,)), n=3)
    fleet.auto_report = False
    fleet.tick()
    assert fleet.state.count("assigned") == 3
    result = fleet.tick(1.0, commands=(Command("rollback"),))
    assert sum(isinstance(a, RevertDevice) for a in result.actions) == 3
    fleet.inbox = [
        DeviceReport("d00", "rolled_back", None),
        DeviceReport("d01", "failed", NEW, "download cancelled"),
    ]
    fleet.tick()
    assert fleet.state.phase == "rolling_back"  # d02 has not answered yet
    fleet.inbox = [DeviceReport("d02", "rolled_back", None)]
    fleet.tick()
    assert fleet.state.phase == "rolled_back"


def test_completion_waits_for_devices_to_leave_probation() -> None:
    """A device that installed but is still on probation keeps the rollout from completing."""
    fleet = Fleet(spec(stages=(1.0,)), n=4, auto_report=False)
    fleet.tick(metrics=healthy_metrics())
    for device in fleet.assigned():
        fleet.inbox.append(DeviceReport(device, "installed", NEW, "on probation"))
    for _ in range(10):
        fleet.tick(10.0, healthy_metrics())
    assert fleet.state.phase == "promoting", describe(fleet.state, fleet.spec)
    fleet.inbox = [DeviceReport(d, "healthy", NEW, "probation passed") for d in fleet.assigned()]
    fleet.tick(1.0, healthy_metrics())
    assert fleet.state.phase == "completed"


def test_devices_already_on_the_rollback_target_are_rolled_back_at_once() -> None:
    """Healthy on the target variant already (the rollout found them there), or installed but
    still running the old one: a rollback has nothing to wait for on those devices — not
    their probation window, not an answer."""
    fleet = Fleet(spec(stages=(1.0,)), n=3)
    fleet.auto_report = False
    fleet.running = {"d00": NEW, "d01": OLD, "d02": OLD}
    fleet.tick()
    assert fleet.state.device("d00").state == "healthy"  # already on target
    fleet.inbox = [DeviceReport("d01", "installed", NEW), DeviceReport("d02", "installed", NEW)]
    fleet.running["d02"] = NEW  # d02 really switched; d01's report is ahead of its switch
    fleet.tick()
    assert fleet.state.device("d00").previous_variant == NEW  # its rollback target
    result = fleet.tick(1.0, commands=(Command("rollback", "operator"),))
    assert {a.device_id for a in result.actions if isinstance(a, RevertDevice)} == {
        "d00",
        "d01",
        "d02",
    }  # the desired state goes back for every device, so none carries on updating
    d00, d01, d02 = (fleet.state.device(f"d0{i}") for i in range(3))
    assert d00.state == "rolled_back" and not d00.revert_requested
    assert d01.state == "rolled_back" and "already on" in d01.reason
    assert d02.revert_requested and fleet.state.phase == "rolling_back"
    fleet.running["d02"] = OLD  # d02 goes back; no report needed to see it
    fleet.tick()
    assert fleet.state.phase == "rolled_back"


def no_agreement_before() -> GateInputs:
    """No control cohort (one stage) and a pre-rollout model that produced no agreement (no
    cloud model to agree with); the canary is healthy."""
    canary = healthy_metrics().canary
    pre = {k: v for k, v in healthy_metrics().control.values.items()}  # type: ignore[union-attr]
    del pre["agreement"]
    return GateInputs(canary, None, CohortMetrics(pre, 5000, 20))


def test_baseline_without_the_metric_does_not_hold_the_rollout() -> None:
    fleet = Fleet(spec(stages=(1.0,)), n=4, running={f"d{i:02d}": OLD for i in range(4)})
    fleet.run_until("completed", no_agreement_before(), limit=20)
    gate = next(g for g in fleet.log[-1].state.last_gates if g.metric == "agreement")
    assert gate.status == "pass" and "not applicable" in gate.reason
    assert "pre-rollout reported 5000 frames but no agreement" in describe(fleet.state)


def test_gates_waiting_past_the_gate_timeout_halt_the_rollout() -> None:
    """A baseline that never reports: the gates wait, but only gate_timeout_seconds after the
    soak; then the rollout halts saying what it waited for (no automatic rollback)."""
    fleet = Fleet(spec(stages=(1.0,), soak_seconds=60.0, gate_timeout_seconds=300.0), n=2)
    no_baseline = GateInputs(healthy_metrics().canary)  # neither control nor pre-rollout
    fleet.tick(1.0, no_baseline)
    fleet.tick(1.0, no_baseline)
    assert fleet.state.phase == "soaking"
    soaked = (fleet.state.soak_started_at or 0.0) + 60.0
    while fleet.now + 10.0 < soaked + 300.0:
        fleet.tick(10.0, no_baseline)
        assert fleet.state.phase == "soaking", describe(fleet.state, fleet.spec)
    assert "waiting for data" in fleet.state.history[-1].reason
    fleet.tick(10.0, no_baseline)
    assert fleet.state.phase == "halted"
    last = fleet.state.history[-1].reason
    assert "gate timeout 300 s" in last and "no control cohort and no pre-rollout" in last
    assert not any(isinstance(a, RevertDevice) for r in fleet.log for a in r.actions)
    # No metrics at all counts as waiting too, and pausing stops the clock.
    other = Fleet(spec(stages=(1.0,), soak_seconds=0.0, gate_timeout_seconds=100.0), n=2)
    other.tick()
    other.tick()
    other.tick(50.0)
    other.tick(1.0, commands=(Command("pause"),))
    other.tick(500.0)
    other.tick(1.0, commands=(Command("resume"),))
    other.tick(30.0)
    assert other.state.phase == "soaking"
    other.tick(30.0)
    assert other.state.phase == "halted" and "no cohort metrics" in other.state.history[-1].reason


def test_gate_timeout_is_validated_and_old_specs_load() -> None:
    with pytest.raises(InvalidRollout):
        spec(gate_timeout_seconds=0.0)
    with pytest.raises(InvalidRollout):
        spec(gate_timeout_seconds=float("inf"))
    stored = spec().to_dict()
    del stored["gate_timeout_seconds"]  # a rollout stored before the field existed
    assert RolloutSpec.from_dict(stored).gate_timeout_seconds == 3600.0


def test_abort_withdraws_assignments_not_installed_and_keeps_installed_devices() -> None:
    fleet = Fleet(spec(stages=(1.0,)), n=4, auto_report=False)
    fleet.running = {"d00": OLD, "d01": OLD, "d02": None, "d03": OLD}
    fleet.tick()
    assert fleet.state.count("assigned") == 4
    fleet.inbox = [DeviceReport("d00", "healthy", NEW), DeviceReport("d01", "downloading", NEW)]
    result = fleet.tick(1.0, commands=(Command("abort", "wrong model"),))
    assert fleet.state.phase == "aborted"
    reverts = {a.device_id: a.variant_id for a in result.actions if isinstance(a, RevertDevice)}
    # d01 (downloading), d02 and d03 (assigned) go back to what they had: OLD, or nothing
    assert reverts == {"d01": OLD, "d02": None, "d03": OLD}
    assert {fleet.state.device(d).state for d in reverts} == {"withdrawn"}
    d00 = fleet.state.device("d00")
    assert d00.state == "healthy" and "keeps" in d00.reason and "rollback" in d00.reason
    last = fleet.state.history[-1].reason
    assert "withdrew 3 assignments" in last and "1 devices that installed keep" in last
    shown = describe(fleet.state, fleet.spec)
    assert "3 assignments withdrawn before install; 1 devices had installed" in shown
    # Late reports change nothing and assign nothing; rollback still reverts d00.
    fleet.inbox = [DeviceReport("d03", "healthy", NEW)]
    later = fleet.tick(10.0, healthy_metrics())
    assert not any(isinstance(a, AssignVariant | RevertDevice) for a in later.actions)
    back = fleet.tick(1.0, commands=(Command("rollback"),))
    assert [a.device_id for a in back.actions if isinstance(a, RevertDevice)] == ["d00"]


def test_abort_on_install_failures_withdraws_assignments_in_flight() -> None:
    fleet = Fleet(
        spec(stages=(1.0,), min_devices=2, install_failure_threshold=0.2, auto_rollback=False,
             max_concurrent_downloads=3),
        n=4, auto_report=False,
    )  # fmt: skip
    fleet.tick()
    first = fleet.assigned()
    assert len(first) == 3
    fleet.inbox = [DeviceReport(d, "failed", NEW, "boom") for d in first[:2]]
    result = fleet.tick()
    assert fleet.state.phase == "aborted"
    assert [a.device_id for a in result.actions if isinstance(a, RevertDevice)] == [first[2]]
    assert fleet.state.device(first[2]).state == "withdrawn"
    (left,) = set(fleet.profiles) - set(first)
    assert fleet.state.device(left).stage == -1  # picked but never assigned: nothing to undo


def test_device_that_rolls_back_on_its_own_counts_as_a_failed_install() -> None:
    """An agent's probation caught a regression and went back by itself: the canary has
    nobody left to measure, so waiting for its gates would wait until their timeout. It is
    a failed install, and enough of them roll the rollout back."""
    fleet = Fleet(spec(stages=(0.25, 1.0), min_devices=1), n=4)
    fleet.auto_report = False
    first = fleet.tick()
    (canary,) = [a.device_id for a in first.actions if isinstance(a, AssignVariant)]
    fleet.inbox = [DeviceReport(canary, "installed", NEW)]
    fleet.tick()
    fleet.inbox = [DeviceReport(canary, "rolled_back", OLD, "probation: p95 latency over budget")]
    fleet.tick()
    assert fleet.state.phase in ("rolling_back", "rolled_back"), describe(fleet.state, fleet.spec)
    assert any("install failure rate 1/1" in h.reason for h in fleet.state.history)
