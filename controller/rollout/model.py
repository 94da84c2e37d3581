"""Values the rollout engine consumes and produces; all serialise to and from plain dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar

from controller.rollout.errors import InvalidRollout
from controller.rollout.gates import DEFAULT_GATES, Gate, GateInputs, GateResult, parse_gate
from controller.rollout.selector import Requirement, selector_from_data

PHASES = frozenset(
    {
        "pending", "rolling", "soaking", "paused", "promoting",
        "completed", "halted", "rolling_back", "rolled_back", "aborted",
    }
)  # fmt: skip
TERMINAL_PHASES = frozenset({"completed", "halted", "rolled_back", "aborted"})
# "withdrawn": an abort took back the assignment before the device installed it.
DEVICE_STATES = frozenset(
    {"pending", "assigned", "downloading", "installed", "healthy", "failed", "rolled_back",
     "withdrawn"}
)  # fmt: skip
IN_FLIGHT = frozenset({"assigned", "downloading"})
REPORT_STATUSES = frozenset({"downloading", "installed", "healthy", "failed", "rolled_back"})
COMMANDS = frozenset({"pause", "resume", "promote", "abort", "rollback"})


def _build(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Pick a dataclass's fields from a dict, with a clear error for missing ones."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InvalidRollout(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    return dict(data)


@dataclass(frozen=True)
class RolloutSpec:
    rollout_id: str
    model: str
    version: int
    # device label selector: requirements, ANDed (a {key: value} mapping or an expression
    # is accepted and converted)
    selector: tuple[Requirement, ...] = ()
    stages: tuple[float, ...] = (0.05, 0.25, 1.0)  # cumulative fractions of targeted devices
    min_devices: int = 1  # per stage; also min devices reporting for a gate
    soak_seconds: float = 3600.0
    gates: tuple[str, ...] = DEFAULT_GATES
    auto_rollback: bool = True
    max_concurrent_downloads: int = 10
    install_failure_threshold: float = 0.1  # abort when failed/attempted exceeds this
    min_samples: int = 100  # frames a cohort needs before a gate can pass
    # The longest the gates may wait for data once a stage's soak is over; then the rollout
    # halts saying which gates were still waiting (no rollout waits forever).
    gate_timeout_seconds: float = 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "selector", selector_from_data(self.selector))
        if not self.stages or any(not 0 < s <= 1 for s in self.stages):
            raise InvalidRollout("stages must be fractions in (0, 1]")
        if list(self.stages) != sorted(self.stages) or self.stages[-1] != 1.0:
            raise InvalidRollout("stages must be increasing and end at 1.0")
        if self.min_devices < 1 or self.max_concurrent_downloads < 1:
            raise InvalidRollout("min_devices and max_concurrent_downloads must be >= 1")
        if not 0 <= self.install_failure_threshold <= 1 or not math.isfinite(self.soak_seconds):
            raise InvalidRollout("install_failure_threshold must be in [0, 1], soak finite")
        if self.soak_seconds < 0 or self.min_samples < 0:
            raise InvalidRollout("soak_seconds and min_samples must be >= 0")
        if not (math.isfinite(self.gate_timeout_seconds) and self.gate_timeout_seconds > 0):
            raise InvalidRollout("gate_timeout_seconds must be a finite number > 0")
        self.parsed_gates()  # raises InvalidGate early

    def parsed_gates(self) -> tuple[Gate, ...]:
        return tuple(parse_gate(g) for g in self.gates)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**d, "selector": [r.to_dict() for r in self.selector],
                "stages": list(self.stages), "gates": list(self.gates)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutSpec:
        d = _build(cls, data)
        try:
            d["stages"] = tuple(float(s) for s in d.get("stages", cls.stages))
            d["gates"] = tuple(d.get("gates", DEFAULT_GATES))
            d["selector"] = selector_from_data(d.get("selector", ()))
            return cls(**d)
        except TypeError as exc:
            raise InvalidRollout(f"RolloutSpec: {exc}") from exc


@dataclass(frozen=True)
class TargetDevice:
    """A device the selector currently matches, and the variant it runs now."""

    device_id: str
    profile: str
    current_variant: str | None = None


@dataclass(frozen=True)
class DeviceReport:
    device_id: str
    status: str  # downloading | installed | healthy | failed | rolled_back
    variant_id: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in REPORT_STATUSES:
            raise InvalidRollout(f"unknown device report status {self.status!r}")


@dataclass(frozen=True)
class Command:
    kind: str  # pause | resume | promote | abort | rollback
    reason: str = ""
    actor: str = "operator"

    def __post_init__(self) -> None:
        if self.kind not in COMMANDS:
            raise InvalidRollout(f"unknown command {self.kind!r}; one of {sorted(COMMANDS)}")


@dataclass(frozen=True)
class Observation:
    now: float
    targeted: tuple[TargetDevice, ...] = ()
    variants: Mapping[str, str | None] = field(default_factory=dict)  # profile -> variant id
    reports: tuple[DeviceReport, ...] = ()
    metrics: GateInputs | None = None
    commands: tuple[Command, ...] = ()


@dataclass(frozen=True)
class DeviceRollout:
    device_id: str
    profile: str
    state: str
    previous_variant: str | None
    target_variant: str
    stage: int = -1  # index of the stage that picked the device; -1 = not picked yet
    reason: str = ""
    updated_at: float = 0.0
    revert_requested: bool = False

    def __post_init__(self) -> None:
        if self.state not in DEVICE_STATES:
            raise InvalidRollout(f"unknown device state {self.state!r}")


@dataclass(frozen=True)
class Decision:
    at: float
    phase: str
    stage: int
    reason: str


@dataclass(frozen=True)
class RolloutState:
    phase: str = "pending"
    stage_index: int = 0
    devices: tuple[DeviceRollout, ...] = ()  # sorted by device id
    unsupported: Mapping[str, str] = field(default_factory=dict)  # device id -> profile
    stage_started_at: float | None = None
    soak_started_at: float | None = None
    paused_at: float | None = None
    paused_from: str | None = None
    history: tuple[Decision, ...] = ()
    last_gates: tuple[GateResult, ...] = ()

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise InvalidRollout(f"unknown rollout phase {self.phase!r}")

    def device(self, device_id: str) -> DeviceRollout:
        """O(1): a step looks up every device it assigns (a scan each was O(N^2))."""
        return self._by_id[device_id]

    @cached_property
    def _by_id(self) -> dict[str, DeviceRollout]:
        return {d.device_id: d for d in self.devices}

    def count(self, *states: str) -> int:
        return sum(1 for d in self.devices if d.state in states)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "stage_index": self.stage_index,
            "devices": [dict(d.__dict__) for d in self.devices],
            "unsupported": dict(self.unsupported),
            "stage_started_at": self.stage_started_at,
            "soak_started_at": self.soak_started_at,
            "paused_at": self.paused_at,
            "paused_from": self.paused_from,
            "history": [dict(h.__dict__) for h in self.history],
            "last_gates": [g.to_dict() for g in self.last_gates],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        d = _build(cls, data)
        try:
            d["devices"] = tuple(DeviceRollout(**x) for x in d.get("devices", ()))
            d["history"] = tuple(Decision(**x) for x in d.get("history", ()))
            d["last_gates"] = tuple(GateResult.from_dict(x) for x in d.get("last_gates", ()))
            d["unsupported"] = dict(d.get("unsupported", {}))
            return cls(**d)
        except TypeError as exc:
            raise InvalidRollout(f"RolloutState: {exc}") from exc


@dataclass(frozen=True)
class AssignVariant:
    kind: ClassVar[str] = "assign"
    device_id: str
    variant_id: str
    previous_variant: str | None = None


@dataclass(frozen=True)
class RevertDevice:
    kind: ClassVar[str] = "revert"
    device_id: str
    variant_id: str | None  # the variant to go back to; None = the device had none before
    reason: str = ""


@dataclass(frozen=True)
class RecordEvent:
    kind: ClassVar[str] = "event"
    message: str
    level: str = "info"  # info | warning


Action = AssignVariant | RevertDevice | RecordEvent
_ACTIONS: dict[str, type] = {c.kind: c for c in (AssignVariant, RevertDevice, RecordEvent)}


def action_to_dict(action: Action) -> dict[str, Any]:
    return {"kind": action.kind, **action.__dict__}


def action_from_dict(data: Mapping[str, Any]) -> Action:
    d = dict(data)
    cls = _ACTIONS.get(str(d.pop("kind", "")))
    if cls is None:
        raise InvalidRollout(f"unknown action kind {data.get('kind')!r}")
    try:
        action: Action = cls(**_build(cls, d))
    except TypeError as exc:
        raise InvalidRollout(f"action: {exc}") from exc
    return action


@dataclass(frozen=True)
class StepResult:
    state: RolloutState
    actions: tuple[Action, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.to_dict(),
            "actions": [action_to_dict(a) for a in self.actions],
        }
