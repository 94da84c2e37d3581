"""The rollout engine: ``step(spec, state, observation) -> StepResult``, a pure function.

The caller (the rollout service) gathers an ``Observation`` — the clock, the devices the
selector matches now, the variant chosen per profile, device reports, cohort metrics and
operator commands — calls ``step``, persists the new state, then carries out the actions
(assign a variant, revert a device, record an event). Restarting the controller only needs
the persisted spec and state.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

from controller.rollout.errors import CommandRejected
from controller.rollout.gates import FAIL, INSUFFICIENT, CohortMetrics, GateInputs, evaluate_gates
from controller.rollout.model import (
    IN_FLIGHT,
    TERMINAL_PHASES,
    Action,
    AssignVariant,
    Command,
    Decision,
    DeviceReport,
    DeviceRollout,
    Observation,
    RecordEvent,
    RevertDevice,
    RolloutSpec,
    RolloutState,
    StepResult,
)
from controller.rollout.selector import selector_text

ACTIVE_PHASES = frozenset({"rolling", "soaking", "promoting"})
SETTLED = frozenset({"installed", "healthy", "failed", "rolled_back"})
# Completion waits for devices to leave probation, not just to install.
FINAL = frozenset({"healthy", "failed", "rolled_back"})
UPDATED = frozenset({"assigned", "downloading", "installed", "healthy"})
# Which report may move a device from which state.
_REPORT_FROM = {
    "downloading": frozenset({"assigned"}),
    "installed": frozenset({"assigned", "downloading"}),
    "healthy": frozenset({"assigned", "downloading", "installed"}),
    "failed": frozenset({"assigned", "downloading", "installed", "healthy"}),
    "rolled_back": frozenset({"assigned", "downloading", "installed", "healthy", "failed"}),
}
_COMMAND_FROM = {
    "pause": ACTIVE_PHASES,
    "resume": frozenset({"paused"}),
    "promote": frozenset({"rolling", "soaking", "paused"}),
    "abort": frozenset({"pending", "rolling", "soaking", "paused", "promoting", "halted"}),
    "rollback": frozenset(
        {"rolling", "soaking", "paused", "promoting", "completed", "halted", "aborted"}
    ),
}


def initial_state() -> RolloutState:
    return RolloutState()


def check_command(state: RolloutState, command: Command) -> None:
    """Raise ``CommandRejected`` if the command does not apply in the current phase."""
    if state.phase not in _COMMAND_FROM[command.kind]:
        raise CommandRejected(f"cannot {command.kind} a rollout that is {state.phase}")


def stage_size(spec: RolloutSpec, stage_index: int, eligible: int) -> int:
    """Devices a stage covers: ceil(fraction * eligible), at least min_devices."""
    wanted = math.ceil(spec.stages[stage_index] * eligible - 1e-9)
    return min(eligible, max(wanted, spec.min_devices))


def step(spec: RolloutSpec, state: RolloutState, obs: Observation) -> StepResult:
    run = _Step(spec, state, obs)
    run.sync_devices()
    run.apply_reports()
    run.apply_commands()
    run.advance()
    return run.result()


class _Step:
    """Working copy for one step; ``step`` stays pure because nothing here outlives it."""

    def __init__(self, spec: RolloutSpec, state: RolloutState, obs: Observation) -> None:
        self.spec, self.obs, self.now = spec, obs, obs.now
        self.state = state
        self.devices = {d.device_id: d for d in state.devices}
        self.unsupported = dict(state.unsupported)
        self.history = list(state.history)
        self.actions: list[Action] = []
        self.last_gates = state.last_gates
        # What each targeted device runs now (None: nothing, or not known).
        self.running = {t.device_id: t.current_variant for t in obs.targeted}

    # -- bookkeeping --------------------------------------------------------------------
    def decide(self, reason: str, phase: str | None = None) -> None:
        if phase is not None:
            self.state = replace(self.state, phase=phase)
        last = self.history[-1] if self.history else None
        if last and (last.reason, last.phase) == (reason, self.state.phase):
            return  # the same decision again (e.g. still waiting for data)
        self.history.append(Decision(self.now, self.state.phase, self.state.stage_index, reason))
        self.actions.append(RecordEvent(reason))

    def set_device(self, d: DeviceRollout, state: str, reason: str, **kw: object) -> None:
        self.devices[d.device_id] = replace(
            d,
            state=state,
            reason=reason,
            updated_at=self.now,
            **kw,  # type: ignore[arg-type]
        )

    def members(self) -> list[DeviceRollout]:
        return [d for d in self.devices.values() if d.stage >= 0]

    def stage_label(self) -> str:
        picked, eligible = len(self.members()), len(self.devices)
        n = len(self.spec.stages)
        return f"stage {self.state.stage_index + 1}/{n}: {picked} of {eligible} devices"

    def result(self) -> StepResult:
        state = replace(
            self.state,
            devices=tuple(self.devices[k] for k in sorted(self.devices)),
            unsupported=self.unsupported,
            history=tuple(self.history),
            last_gates=self.last_gates,
        )
        return StepResult(state, tuple(self.actions))

    # -- inputs ---------------------------------------------------------------------------
    def sync_devices(self) -> None:
        seen = set()
        for t in self.obs.targeted:
            seen.add(t.device_id)
            variant = self.obs.variants.get(t.profile)
            known = self.devices.get(t.device_id)
            if not variant:
                if self.unsupported.get(t.device_id) != t.profile:
                    msg = f"device {t.device_id}: no variant for profile {t.profile}"
                    self.actions.append(RecordEvent(msg, "warning"))
                self.unsupported[t.device_id] = t.profile
                if known and known.state == "pending":
                    del self.devices[t.device_id]
                continue
            self.unsupported.pop(t.device_id, None)
            if known is None:
                self.devices[t.device_id] = DeviceRollout(
                    t.device_id, t.profile, "pending", t.current_variant, variant,
                    updated_at=self.now,
                )  # fmt: skip
                if self.state.phase != "pending":
                    self.actions.append(
                        RecordEvent(
                            f"device {t.device_id} joined at stage {self.state.stage_index + 1}"
                        )
                    )
            elif known.state == "pending" and known.stage < 0:
                self.devices[t.device_id] = replace(
                    known, profile=t.profile, previous_variant=t.current_variant,
                    target_variant=variant,
                )  # fmt: skip
        for device_id in list(self.devices):
            d = self.devices[device_id]
            if device_id not in seen and d.state == "pending":
                del self.devices[device_id]  # no longer targeted and never touched
        for device_id in list(self.unsupported):
            if device_id not in seen:
                del self.unsupported[device_id]

    def apply_reports(self) -> None:
        for r in self.obs.reports:
            d = self.devices.get(r.device_id)
            if d is None or d.state not in _REPORT_FROM[r.status]:
                continue
            if r.status != "rolled_back" and r.variant_id not in (None, d.target_variant):
                continue  # stale report about another version
            self._report(d, r)

    def _report(self, d: DeviceRollout, r: DeviceReport) -> None:
        reason = r.reason or r.status
        self.set_device(
            d,
            r.status,
            reason,
            # A failed device never switched (the agent kept or restored its old model).
            revert_requested=d.revert_requested and r.status not in ("failed", "rolled_back"),
        )
        if r.status in ("failed", "rolled_back"):
            msg = (
                f"device {d.device_id} {r.status.replace('_', ' ')} on {d.target_variant}: {reason}"
            )
            self.actions.append(RecordEvent(msg, "warning"))

    def apply_commands(self) -> None:
        for c in self.obs.commands:
            try:
                check_command(self.state, c)
            except CommandRejected as exc:
                self.actions.append(RecordEvent(f"{c.actor}: {exc}", "warning"))
                continue
            why = f"{c.actor} {c.kind}" + (f": {c.reason}" if c.reason else "")
            if c.kind == "pause":
                self.state = replace(self.state, paused_at=self.now, paused_from=self.state.phase)
                self.decide(why, "paused")
            elif c.kind == "resume":
                self._resume(why)
            elif c.kind == "promote":
                if self.state.phase == "paused":
                    self._resume(why)
                self.promote(f"{self.stage_label()}; {why} (gates skipped)")
            elif c.kind == "abort":
                self.abort(why)
            else:
                self.start_rollback(why)

    def _resume(self, why: str) -> None:
        back_to = self.state.paused_from or "rolling"
        paused = self.now - (self.state.paused_at or self.now)
        soak = self.state.soak_started_at
        self.state = replace(
            self.state,
            soak_started_at=None if soak is None else soak + paused,
            paused_at=None,
            paused_from=None,
        )
        self.decide(why, back_to)

    # -- transitions ----------------------------------------------------------------------
    def promote(self, reason: str) -> None:
        last = self.state.stage_index + 1 >= len(self.spec.stages)
        if last:
            self.decide(f"{reason}; promoting to completion", "promoting")
            return
        self.state = replace(
            self.state,
            stage_index=self.state.stage_index + 1,
            stage_started_at=self.now,
            soak_started_at=None,
        )
        self.decide(f"{reason}; entering stage {self.state.stage_index + 1}", "rolling")

    def start_rollback(self, reason: str) -> None:
        reverted = 0
        for d in list(self.devices.values()):
            if d.state == "pending" and d.stage >= 0:
                self.set_device(d, "pending", "stage cancelled", stage=-1)
            elif d.state == "failed":
                self.set_device(d, "rolled_back", "install had failed; still on previous")
            elif d.state in UPDATED:
                # The desired state goes back either way, so the device stops any update.
                self.actions.append(RevertDevice(d.device_id, d.previous_variant, reason))
                if not self.already_back(d):
                    self.set_device(d, d.state, "revert requested", revert_requested=True)
                    reverted += 1
        self.decide(f"{reason}; rolling back {reverted} devices", "rolling_back")
        self.settle_reverts()

    def abort(self, reason: str) -> None:
        """Stop the rollout where it is. An assignment a device has not installed yet is
        withdrawn (its desired state goes back to what it ran before the rollout, or to
        none), so a device that was offline does not install the aborted variant later.
        Devices that installed already keep it: reverting them is what rollback is for."""
        withdrawn = kept = 0
        for d in list(self.devices.values()):
            if d.stage < 0:
                continue
            if d.state == "pending":
                self.set_device(d, "pending", "stage cancelled by abort", stage=-1)
            elif d.state in IN_FLIGHT:
                self.actions.append(RevertDevice(d.device_id, d.previous_variant, reason))
                back = d.previous_variant or "no assignment"
                why = f"abort withdrew the assignment before install; desired state back to {back}"
                self.set_device(d, "withdrawn", why)
                withdrawn += 1
            elif d.state in ("installed", "healthy") and d.previous_variant != d.target_variant:
                why = f"installed before the abort: keeps {d.target_variant} (rollback reverts it)"
                self.set_device(d, d.state, why)
                kept += 1
        summary = f"{reason}; withdrew {withdrawn} assignments not installed yet"
        if kept:
            summary += (
                f"; {kept} devices that installed keep the new variant "
                "(abort does not revert them: use rollback)"
            )
        self.decide(summary, "aborted")

    def already_back(self, d: DeviceRollout) -> bool:
        """An installed or healthy device that runs its rollback target already (it was on
        the target before, or its update never took) counts as rolled back at once: waiting
        for its answer would mean waiting out its probation window. A device with a download
        in flight may still switch, so it answers first; and with no previous variant,
        "runs nothing" and "not known" look alike, so that device answers too."""
        back = d.previous_variant
        if back is None or d.state in IN_FLIGHT or self.running.get(d.device_id) != back:
            return False
        self.set_device(d, "rolled_back", f"already on {back}", revert_requested=False)
        return True

    def settle_reverts(self) -> None:
        for d in list(self.devices.values()):
            if d.revert_requested:
                self.already_back(d)

    def check_failures(self) -> bool:
        # In an active phase a device is rolled back only by its own doing (its probation
        # caught a crash loop or a regression): that is a failed install too.
        failed = sum(1 for d in self.devices.values() if d.state in ("failed", "rolled_back"))
        attempted = failed + sum(
            1 for d in self.devices.values() if d.state in ("installed", "healthy")
        )
        if attempted < self.spec.min_devices or attempted == 0:
            return False
        rate = failed / attempted
        if rate <= self.spec.install_failure_threshold:
            return False
        why = (
            f"{self.stage_label()}; install failure rate {failed}/{attempted} = {rate:.0%} "
            f"> {self.spec.install_failure_threshold:.0%}: aborted"
        )
        if self.spec.auto_rollback:
            self.start_rollback(why)
        else:
            self.abort(why)
        return True

    def fill_stage(self) -> None:
        target = stage_size(self.spec, self.state.stage_index, len(self.devices))
        members = self.members()
        if len(members) < target:
            key = self.spec.rollout_id.encode()
            queue = sorted(
                (d for d in self.devices.values() if d.stage < 0 and d.state == "pending"),
                key=lambda d: hashlib.sha256(key + b"\0" + d.device_id.encode()).digest(),
            )
            for d in queue[: target - len(members)]:
                if d.previous_variant == d.target_variant:
                    self.set_device(d, "healthy", "already on target", stage=self.state.stage_index)
                else:
                    self.set_device(
                        d,
                        "pending",
                        "picked, waiting for a download slot",
                        stage=self.state.stage_index,
                    )
        in_flight = sum(1 for d in self.devices.values() if d.state in IN_FLIGHT)
        free = self.spec.max_concurrent_downloads - in_flight
        waiting = sorted(
            (d for d in self.devices.values() if d.stage >= 0 and d.state == "pending"),
            key=lambda d: (d.stage, d.updated_at, d.device_id),
        )
        for d in waiting[: max(free, 0)]:
            self.set_device(d, "assigned", f"assigned {d.target_variant}")
            self.actions.append(AssignVariant(d.device_id, d.target_variant, d.previous_variant))

    def advance(self) -> None:
        phase = self.state.phase
        if phase == "pending":
            self.state = replace(self.state, stage_index=0, stage_started_at=self.now)
            self.decide(f"started: {len(self.devices)} targeted devices have a variant", "rolling")
            phase = "rolling"
        if phase == "rolling_back":
            self.settle_reverts()
            if not any(d.revert_requested for d in self.devices.values()):
                self.decide(
                    "every device in the rollout is back on its previous variant", "rolled_back"
                )
            return
        if phase not in ACTIVE_PHASES or self.check_failures():
            return
        self.fill_stage()
        settled = all(d.state in SETTLED for d in self.members())
        if phase == "rolling" and settled:
            self.state = replace(self.state, soak_started_at=self.now)
            self.decide(
                f"{self.stage_label()} settled; soaking {self.spec.soak_seconds:g} s", "soaking"
            )
            phase = "soaking"
        if phase == "promoting":
            self.advance_promoting()
        if (
            phase == "soaking"
            and self.now - (self.state.soak_started_at or self.now) >= self.spec.soak_seconds
        ):
            self.evaluate()

    def wait_for_gates(self, why: str) -> None:
        """Wait for gate data, at most ``gate_timeout_seconds`` after the soak ended; then halt
        saying what was missing. No automatic rollback: missing data is no evidence of harm,
        so the operator decides (rollback, abort, or a new rollout with other gates)."""
        soaked = (self.state.soak_started_at or self.now) + self.spec.soak_seconds
        waited = self.now - soaked
        limit = self.spec.gate_timeout_seconds
        if waited < limit:
            self.decide(f"{self.stage_label()}; {why}")
            return
        self.decide(
            f"{self.stage_label()}; gates still waiting for data {waited:g} s after the soak "
            f"(gate timeout {limit:g} s): {why}: halted",
            "halted",
        )

    def evaluate(self) -> None:
        metrics = self.obs.metrics
        if metrics is None:
            self.wait_for_gates("waiting for data (no cohort metrics yet)")
            return
        failed = sum(1 for d in self.members() if d.state == "failed")
        attempted = sum(1 for d in self.members() if d.state in ("failed", "installed", "healthy"))
        canary = metrics.canary
        if "install_failure_rate" not in canary.values and attempted:
            values = {**canary.values, "install_failure_rate": failed / attempted}
            canary = CohortMetrics(values, canary.samples, canary.devices)
        inputs = GateInputs(canary, metrics.control, metrics.pre_rollout)
        min_devices = min(self.spec.min_devices, max(len(self.members()), 1))
        results = evaluate_gates(
            self.spec.parsed_gates(),
            inputs,
            min_samples=self.spec.min_samples,
            min_devices=min_devices,
            first_install=not any(d.previous_variant for d in self.members()),
        )
        self.last_gates = tuple(results)
        failing = [r for r in results if r.status == FAIL]
        if failing:
            why = f"{self.stage_label()}; " + "; ".join(r.reason for r in failing)
            self.decide(f"{why}: halted", "halted")
            if self.spec.auto_rollback:
                self.start_rollback(why)
            return
        waiting = [r for r in results if r.status == INSUFFICIENT]
        if waiting:
            self.wait_for_gates("; ".join(r.reason for r in waiting))
            return
        self.promote(f"{self.stage_label()}; " + "; ".join(r.reason for r in results))
        if self.state.phase == "promoting":
            self.advance_promoting()
        elif self.state.phase == "rolling":
            self.fill_stage()

    def advance_promoting(self) -> None:
        if all(d.state in FINAL for d in self.members()):
            self.decide(f"{self.stage_label()}; all stages passed", "completed")


def describe(state: RolloutState, spec: RolloutSpec | None = None) -> str:
    """Explain in a few lines why the rollout is where it is."""
    lines = []
    head = f"rollout {spec.rollout_id} ({spec.model} v{spec.version}): " if spec else "rollout: "
    stage = f"stage {state.stage_index + 1}" + (f"/{len(spec.stages)}" if spec else "")
    if spec:
        stage += f" ({spec.stages[state.stage_index]:.0%})"
    lines.append(f"{head}{state.phase}, {stage}")
    if spec and spec.selector:
        lines.append(f"targets: {selector_text(spec.selector)}")
    counts: dict[str, int] = {}
    for d in state.devices:
        counts[d.state] = counts.get(d.state, 0) + 1
    lines.append("devices: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    if state.unsupported:
        lines.append(
            "no variant: "
            + ", ".join(f"{d} (profile {p})" for d, p in sorted(state.unsupported.items()))
        )
    for g in state.last_gates:
        lines.append(f"  [{g.status}] {g.reason}")
    if state.phase == "aborted":
        withdrawn = state.count("withdrawn")
        kept = sum(
            1
            for d in state.devices
            if d.state in ("installed", "healthy") and d.previous_variant != d.target_variant
        )
        lines.append(
            f"abort: {withdrawn} assignments withdrawn before install; {kept} devices had "
            "installed and keep the new variant (abort does not revert them; rollback does)"
        )
    if state.history:
        lines.append(f"last decision: {state.history[-1].reason}")
    if state.phase in TERMINAL_PHASES:
        lines.append("finished")
    return "\n".join(lines)
