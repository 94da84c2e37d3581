"""The update state machine: ``transition(config, state, event) -> (state, actions)``, pure.

idle -> downloading -> verifying -> installing -> smoke_testing -> activating -> probation
-> committed | rolled_back, and failed(reason) from any step. The shell (``updater.py``)
performs the actions and feeds back events; it owns disk, network and clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import VariantMetadata
from edgefleet.retry import Backoff
from edgefleet.updates import VerifiedTarget
from edgefleet.updates.custom import variant_fields
from edgefleet.updates.names import check_model_file_name

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_TARGET_BYTES = 4 << 30


@dataclass(frozen=True)
class TargetInfo:
    """What to install: a TUF target (path, length, sha256) and its variant metadata."""

    variant_id: str
    path: str  # TUF target path, what the fetcher asks for
    length: int
    sha256: str
    metadata: Mapping[str, Any]  # VariantMetadata as a dict; becomes variant.json
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def model_file(self) -> str:
        return str(self.metadata["file"])

    @classmethod
    def from_dict(cls, data: Any) -> TargetInfo:
        """Validate a desired-state target from the controller; garbage raises InvalidInput."""
        if not isinstance(data, Mapping):
            raise InvalidInput("target info must be an object")
        try:
            length, hashes = data["length"], data["hashes"]
            sha, path = hashes["sha256"], data["path"]
            custom = data["custom"]
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"target info lacks {exc}") from exc
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or not 0 < length <= MAX_TARGET_BYTES
        ):
            raise InvalidInput(f"target length must be a positive int, not {length!r}")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise InvalidInput("target sha256 must be 64 lowercase hex digits")
        if not isinstance(path, str) or not path or ".." in path.split("/") or "\0" in path:
            raise InvalidInput(f"bad target path {path!r}")
        custom = dict(custom) if isinstance(custom, Mapping) else {}
        meta = VariantMetadata.from_dict(variant_fields(custom))
        check_model_file_name(meta.file)
        if (meta.sha256 and meta.sha256 != sha) or (meta.size_bytes and meta.size_bytes != length):
            raise InvalidInput("variant metadata names another artifact than its target")
        raw = {"path": path, "length": length, "hashes": {"sha256": sha}, "custom": custom,
               "variant_id": meta.variant_id}  # fmt: skip
        return cls(meta.variant_id, path, length, sha, meta.to_dict(), raw)

    @classmethod
    def from_signed(cls, signed: VerifiedTarget) -> TargetInfo:
        """What to install from a *verified* TUF target: every installed field (labels,
        temperature, preprocessing, file name, runtime...) is the signed custom metadata."""
        hashes = {"sha256": signed.sha256}
        data = {"path": signed.path, "length": signed.length, "hashes": hashes,
                "custom": signed.custom}  # fmt: skip
        return cls.from_dict(data)


@dataclass(frozen=True)
class UpdateConfig:
    max_retries: int = 5  # consecutive failed fetches without progress
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    # After a download gave up on a transient failure, the same target is tried again this
    # many more times (resuming its partial download), ``round_backoff_s`` later, doubling.
    retry_rounds: int = 3
    round_backoff_s: float = 30.0
    round_backoff_max_s: float = 900.0
    probation_seconds: float = 300.0
    min_probation_frames: int = 0
    max_error_rate: float = 0.05
    latency_budget_ms: float | None = None

    def backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt``: the shared schedule, unjittered, so that the
        transition stays a pure function of its inputs (the shell sleeps, not the machine)."""
        return Backoff(self.backoff_base, self.backoff_max).delay(attempt)

    def round_backoff(self, round_: int) -> float:
        """Seconds before download round ``round_`` + 1 of a target that gave up."""
        return Backoff(self.round_backoff_s, self.round_backoff_max_s).delay(round_)


@dataclass(frozen=True)
class UpdateState:
    phase: str = "idle"
    target: TargetInfo | None = None
    offset: int = 0
    attempts: int = 0
    retry_at: float | None = None
    probation_until: float | None = None
    probation_frames: int = 0
    reason: str = ""
    current_variant: str | None = None
    rounds: int = 0  # download rounds that gave up on this target so far


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DesiredState:
    target: TargetInfo
    now: float
    resume_offset: int = 0  # bytes of this target already on disk


@dataclass(frozen=True)
class ChunkReceived:
    size: int


@dataclass(frozen=True)
class DownloadComplete:
    now: float


@dataclass(frozen=True)
class DownloadFailed:
    reason: str
    now: float
    retryable: bool = True


@dataclass(frozen=True)
class VerificationOk:
    pass


@dataclass(frozen=True)
class VerificationFailed:
    reason: str


@dataclass(frozen=True)
class WriteOk:
    slot: str


@dataclass(frozen=True)
class WriteFailed:
    reason: str


@dataclass(frozen=True)
class SmokeOk:
    pass


@dataclass(frozen=True)
class SmokeFailed:
    reason: str


@dataclass(frozen=True)
class Activated:
    now: float


@dataclass(frozen=True)
class ProbationMetrics:
    frames: int
    error_rate: float = 0.0
    latency_ms: float | None = None
    crashed: bool = False


@dataclass(frozen=True)
class Timer:
    now: float


Event = (
    DesiredState | ChunkReceived | DownloadComplete | DownloadFailed | VerificationOk
    | VerificationFailed | WriteOk | WriteFailed | SmokeOk | SmokeFailed
    | Activated | ProbationMetrics | Timer
)  # fmt: skip


# -- actions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fetch:
    target: TargetInfo
    offset: int


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class DiscardDownload:
    target: TargetInfo


@dataclass(frozen=True)
class Verify:
    target: TargetInfo


@dataclass(frozen=True)
class WriteSlot:
    target: TargetInfo


@dataclass(frozen=True)
class RunSmokeTest:
    target: TargetInfo


@dataclass(frozen=True)
class Activate:
    target: TargetInfo


@dataclass(frozen=True)
class Commit:
    target: TargetInfo


@dataclass(frozen=True)
class Rollback:
    reason: str


@dataclass(frozen=True)
class Report:
    phase: str
    variant_id: str | None
    reason: str = ""


Action = (
    Fetch | Wait | DiscardDownload | Verify | WriteSlot | RunSmokeTest | Activate | Commit
    | Rollback | Report
)  # fmt: skip
BUSY = frozenset({"downloading", "verifying", "installing", "smoke_testing", "activating"})
Result = tuple[UpdateState, tuple[Action, ...]]


def _fail(state: UpdateState, reason: str, *, discard: bool = False) -> Result:
    vid = state.target.variant_id if state.target else None
    actions: list[Action] = []
    if discard and state.target is not None:
        actions.append(DiscardDownload(state.target))
    actions.append(Report("failed", vid, reason))
    return replace(state, phase="failed", reason=reason, retry_at=None), tuple(actions)


def _step(state: UpdateState, phase: str, *actions: Action, **kw: Any) -> Result:
    vid = state.target.variant_id if state.target else None
    return replace(state, phase=phase, **kw), (*actions, Report(phase, vid, kw.get("reason", "")))


def transition(config: UpdateConfig, state: UpdateState, event: Event) -> Result:
    """Decide what happens next; events that do not fit the current phase change nothing."""
    t = state.target
    if isinstance(event, DesiredState):
        return _desired(state, event)
    if t is None:
        return state, ()
    match state.phase, event:
        case "downloading", ChunkReceived(size=size):
            offset = state.offset + size
            if offset > t.length:
                why = f"download longer than the target's {t.length} bytes"
                return _fail(replace(state, offset=offset), why, discard=True)
            return replace(state, offset=offset, attempts=0), ()
        case "downloading", DownloadComplete(now=now):
            if state.offset < t.length:
                why = f"truncated download: {state.offset} of {t.length} bytes"
                return _retry(config, state, why, now)
            return _step(state, "verifying", Verify(t), retry_at=None)
        case "downloading", DownloadFailed(reason=reason, now=now, retryable=retryable):
            if not retryable:
                return _fail(state, reason, discard=True)
            return _retry(config, state, reason, now)
        case "downloading", Timer(now=now) if state.retry_at is not None and now >= state.retry_at:
            return replace(state, retry_at=None), (Fetch(t, state.offset),)
        case "failed", Timer(now=now) if state.retry_at is not None and now >= state.retry_at:
            again = f"download round {state.rounds + 1} (after: {state.reason})"
            return _step(state, "downloading", Fetch(t, state.offset), retry_at=None,
                         attempts=0, reason=again)  # fmt: skip
        case "verifying", VerificationOk():
            return _step(state, "installing", WriteSlot(t))
        case "verifying", VerificationFailed(reason=reason):
            return _fail(state, f"verification failed: {reason}", discard=True)
        case "installing", WriteOk():
            return _step(state, "smoke_testing", RunSmokeTest(t))
        case "installing", WriteFailed(reason=reason):
            return _fail(state, f"install failed: {reason}", discard=True)
        case "smoke_testing", SmokeOk():
            return _step(state, "activating", Activate(t))
        case "smoke_testing", SmokeFailed(reason=reason):
            return _fail(state, f"smoke test failed: {reason}")
        case "activating", Activated(now=now):
            until = now + config.probation_seconds
            return _step(state, "probation", probation_until=until, probation_frames=0)
        case "probation", ProbationMetrics() as m:
            return _probation(config, state, m)
        case "probation", Timer(now=now) if state.probation_until is not None:
            if now < state.probation_until or state.probation_frames < config.min_probation_frames:
                return state, ()
            return _step(state, "committed", Commit(t), current_variant=t.variant_id)
    return state, ()


def _desired(state: UpdateState, event: DesiredState) -> Result:
    t = event.target
    if t.variant_id == state.current_variant and state.phase not in BUSY | {"probation"}:
        return state, ()  # already running it
    if state.target == t and state.phase in BUSY | {"probation", "failed", "rolled_back"}:
        return state, ()  # in progress, or already refused: do not loop on a bad target
    actions: list[Action] = []
    if state.target is not None and state.phase in BUSY:
        actions.append(DiscardDownload(state.target))
    offset = min(max(event.resume_offset, 0), t.length)
    new = UpdateState("downloading", t, offset, current_variant=state.current_variant)
    return new, (*actions, Report("downloading", t.variant_id, ""), Fetch(t, offset))


def _retry(config: UpdateConfig, state: UpdateState, reason: str, now: float) -> Result:
    attempts = state.attempts + 1
    if attempts > config.max_retries:
        why = f"{reason} (gave up after {config.max_retries} retries)"
        if state.rounds >= config.retry_rounds:
            return _fail(state, why)
        rounds = state.rounds + 1  # a transient failure: try this target again later
        delay = config.round_backoff(rounds)
        why = f"{why}; download round {rounds + 1} of {config.retry_rounds + 1} in {delay:.0f} s"
        failed, _ = _fail(replace(state, rounds=rounds), why)
        # Still trying: the controller hears "downloading" (a rollout must not count a round
        # that a later one may still complete as a failed install).
        vid = state.target.variant_id if state.target else None
        return replace(failed, retry_at=now + delay), (Report("downloading", vid, why),)
    until = now + config.backoff(attempts)
    return replace(state, attempts=attempts, retry_at=until, reason=reason), (Wait(until),)


def _probation(config: UpdateConfig, state: UpdateState, m: ProbationMetrics) -> Result:
    problem = ""
    if m.crashed:
        problem = "inference crashed"
    elif m.error_rate > config.max_error_rate:
        problem = f"error rate {m.error_rate:.3f} > {config.max_error_rate:.3f}"
    elif (
        config.latency_budget_ms is not None
        and m.latency_ms is not None
        and m.latency_ms > config.latency_budget_ms
    ):
        problem = f"latency {m.latency_ms:.1f} ms > budget {config.latency_budget_ms:.1f} ms"
    if problem:
        why = f"probation failed: {problem}"
        return _step(state, "rolled_back", Rollback(why), reason=why, probation_until=None)
    return replace(state, probation_frames=state.probation_frames + m.frames), ()
