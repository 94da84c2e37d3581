"""The rollout service: the thin shell around the pure rollout engine.

Every tick (a background thread) and every operator command, for each active rollout it
gathers an ``Observation`` — targeted devices (label selector over the registry), the variant
selected per hardware profile, device update reports, canary vs control cohort metrics — calls
``engine.step``, persists the new state with its events and desired states in one transaction,
then publishes each changed desired state as a retained MQTT message (devices also pull it
over gRPC). A controller restarted mid-rollout just carries on from the stored state.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from controller.errors import StaleWrite
from controller.monitoring.events import EventListener, FleetEvent, announce
from controller.rollout import (
    AssignVariant,
    Command,
    CommandRejected,
    DeviceReport,
    GateInputs,
    Observation,
    RecordEvent,
    Requirement,
    RevertDevice,
    RolloutSpec,
    RolloutState,
    TargetDevice,
    check_command,
    check_gate_metrics,
    describe,
    initial_state,
    matches,
    parse_selector,
    selector_from_data,
    step,
)
from controller.rollout.model import TERMINAL_PHASES
from controller.services.leadership import Leader
from controller.services.rollout_events import step_events
from controller.services.rollout_metrics import MetricsSource, gate_inputs
from controller.services.rollout_pins import RolloutPins
from controller.services.rollout_store import (
    MAX_REPORT_REASON,
    Desired,
    RolloutStore,
    StoredRollout,
    check_report,
)
from controller.store.db import Database
from edgefleet.errors import EdgeFleetError, FailedPrecondition, NotFound

log = logging.getLogger(__name__)

# Agent update-machine phases -> the engine's device report statuses.
_REPORT_MAP = {
    "downloading": "downloading", "verifying": "downloading",
    "installing": "installed", "smoke_testing": "installed", "activating": "installed",
    "installed": "installed", "probation": "installed",
    "committed": "healthy", "healthy": "healthy",
    "failed": "failed", "rolled_back": "rolled_back",
}  # fmt: skip


class ReleaseCatalogue(Protocol):
    """What rollouts read of the model registry (the model catalogue implements it)."""

    def selected_variant(self, model: str, version: int, profile: str) -> Any:
        """The variant chosen for a profile now, or None."""

    def check_release(self, model: str, version: int) -> None:
        """NotFound for an unknown version; FailedPrecondition for one with nothing built."""

    def release_variants(self, model: str, version: int) -> Mapping[str, Any]:
        """profile -> the variant a rollout started now pins (None: nothing fits)."""

    def variant_for(self, variant_id: str, profile: str) -> Any:
        """A built variant by id when it is one of the profile's signed targets, else None."""


class FleetDevice(Protocol):
    """What rollouts read of a registered device (``controller.services.devices.Device``)."""

    @property
    def device_id(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


class DesiredPublisher(Protocol):
    def publish_desired(
        self, device_id: str, payload: bytes, timeout: float | None = None
    ) -> None: ...  # fmt: skip


@dataclass(frozen=True)
class RolloutConfig:
    tick_interval_s: float = 2.0
    publish_timeout_s: float = 2.0
    # a rollout's max_concurrent_downloads when its spec gives none (controller.app:
    # rollout_download_default, from what this replica can serve at once)
    default_max_downloads: int = 10


def desired_payload(d: Desired) -> bytes:
    import json

    return json.dumps(d.to_dict(), sort_keys=True).encode()


def target_of(variant: Any) -> dict[str, Any]:
    """What names the TUF target in a desired state (path, length, sha256). The unsigned
    message carries no variant metadata: the device installs the signed target's."""
    return {
        "path": variant.target_path,
        "length": int(variant.size),
        "hashes": {"sha256": variant.sha256},
    }


class RolloutService:
    def __init__(
        self,
        db: Database,
        list_devices: Callable[[Mapping[str, str]], Sequence[FleetDevice]],
        variants: ReleaseCatalogue,
        *,
        metrics: MetricsSource | None = None,
        publisher: DesiredPublisher | None = None,
        config: RolloutConfig | None = None,
        device_variant: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        leader: Leader | None = None,
    ) -> None:
        self.store = RolloutStore(db)
        self.pins = RolloutPins(db)
        self._list_devices, self.variants = list_devices, variants
        self.metrics, self._publisher = metrics, publisher
        self._device_variant = device_variant  # telemetry's newest variant, when not reported
        self.config = config or RolloutConfig()
        self._clock = clock
        # ticks run only on the leader replica, their writes fenced by its lease; operator
        # commands run on any replica, each write checked against the state it read
        self._leader = leader
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.listeners: list[EventListener] = []  # told of starts, commands, phases, gates

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        ticking = False
        while not self._stop.is_set():
            try:
                leads = self._leader is None or self._leader.is_leader
                if leads != ticking:
                    ticking = leads
                    log.info("rollout engine %s", TICKING if leads else "paused: not the leader")
                if leads:
                    self.tick()
            except Exception:  # the loop must outlive a database or broker hiccup
                log.exception("rollout tick failed")
            self._wake.wait(self.config.tick_interval_s)
            self._wake.clear()

    def poke(self) -> None:
        """Tick soon (a device reported something)."""
        self._wake.set()

    # -- operator API -----------------------------------------------------------------------
    def start_rollout(self, spec_fields: Mapping[str, Any]) -> StoredRollout:
        fields = dict(spec_fields)
        # ``target``: a set-based selector expression, ANDed with ``selector`` (equalities).
        target = parse_selector(str(fields.pop("target", "") or ""))
        fields["selector"] = (*selector_from_data(fields.get("selector", ())), *target)
        if not fields.get("max_concurrent_downloads"):
            fields["max_concurrent_downloads"] = self.config.default_max_downloads
        spec = RolloutSpec.from_dict({**fields, "rollout_id": uuid.uuid4().hex[:12]})
        check_gate_metrics(spec.gates)  # a gate nothing measures would wait forever
        # A version that does not exist or is unbuilt is refused here.
        self.variants.check_release(spec.model, spec.version)
        # The rollout pins the variant per profile the version recommends now: nothing that
        # happens to the model later changes what this rollout installs.
        release = self.variants.release_variants(spec.model, spec.version)
        with self._lock:
            for other in self.store.rollouts(active_only=True):
                if other.spec.model == spec.model:
                    raise FailedPrecondition(
                        f"rollout {other.rollout_id} of {spec.model} is still {other.state.phase}"
                    )
            self.pins.save(spec.rollout_id, dict(release))
            self.store.create(spec, initial_state())
            announce(self.listeners, FleetEvent("rollout.started", f"rollout {spec.rollout_id}"
                     f" of {spec.model}:{spec.version} started", subject=spec.rollout_id,
                     data={"model": spec.model, "version": spec.version}))  # fmt: skip
            try:
                self._step(spec.rollout_id, ())
            except StaleWrite:  # the leader's tick took the first step: it is stored
                log.info("rollout %s: first step taken by the leader", spec.rollout_id)
            return self.store.get(spec.rollout_id)

    def command(self, rollout_id: str, kind: str, reason: str = "") -> StoredRollout:
        cmd = Command(kind, reason)
        with self._lock:
            check_command(self.store.get(rollout_id).state, cmd)
            announce(self.listeners, FleetEvent("rollout.command", f"operator: {kind} rollout "
                     f"{rollout_id}" + (f" ({reason})" if reason else ""), subject=rollout_id,
                     data={"command": kind, "reason": reason}))  # fmt: skip
            for attempt in range(_COMMAND_ATTEMPTS):  # a tick of the leader may come between
                try:
                    self._step(rollout_id, (cmd,))
                    break
                except StaleWrite:
                    if attempt == _COMMAND_ATTEMPTS - 1:
                        raise
                    check_command(self.store.get(rollout_id).state, cmd)
            return self.store.get(rollout_id)

    def get(self, rollout_id: str) -> StoredRollout:
        return self.store.get(rollout_id)

    def rollouts(self) -> list[StoredRollout]:
        return self.store.rollouts()

    def explain(self, rollout: StoredRollout) -> str:
        return describe(rollout.state, rollout.spec)

    # -- device API -------------------------------------------------------------------------
    def desired_for(self, device_id: str) -> Desired | None:
        return self.store.desired(device_id)

    def report(
        self,
        device_id: str,
        state: str,
        variant_id: str,
        reason: str = "",
        running_variant: str = "",
        revision: int = 0,
    ) -> None:
        check_report(state, variant_id, running_variant)
        reason = reason[:MAX_REPORT_REASON]
        changed = self.store.record_report(device_id, state, variant_id, reason,
                                           running_variant, revision)  # fmt: skip
        if changed:
            if state:
                log.info("device %s update %s %s %s", device_id, state, variant_id, reason)
            else:
                log.info("device %s runs %s", device_id, running_variant)
            self.poke()
        else:  # a quiet poll: the device re-sent what the controller already has
            log.debug("device %s poll: %s %s (no change)", device_id, state or "-",
                      running_variant or "-")  # fmt: skip

    # -- the step ---------------------------------------------------------------------------
    def tick(self) -> None:
        fence = self._leader.fence if self._leader is not None else None
        with self._lock:
            for rollout in self.store.rollouts(active_only=True):
                try:
                    self._step(rollout.rollout_id, (), fence)
                except StaleWrite as exc:  # another replica's write came first, or no lease
                    log.warning("rollout %s step not saved: %s", rollout.rollout_id, exc)
                except EdgeFleetError:
                    log.exception("rollout %s step failed", rollout.rollout_id)

    def _step(
        self,
        rollout_id: str,
        commands: Sequence[Command],
        fence: Callable[[Any], None] | None = None,
    ) -> None:
        stored = self.store.get(rollout_id)
        spec, state = stored.spec, stored.state
        if state.phase in TERMINAL_PHASES and not commands:
            return
        now = self._clock()
        devices = [
            d
            for d in self._list_devices(_equalities(spec.selector))
            if d.state == "enrolled" and d.profile and matches(spec.selector, d.labels)
        ]
        statuses = self.store.statuses(d.device_id for d in devices)
        chosen = self._choose(spec, {d.profile for d in devices})
        running = {k: st.running_variant or None for k, st in statuses.items()}
        if self._device_variant is not None:
            for d in devices:
                running[d.device_id] = running.get(d.device_id) or self._device_variant(d.device_id)
        targeted = tuple(
            TargetDevice(d.device_id, d.profile, running.get(d.device_id)) for d in devices
        )
        reports = self._reports(spec, state, statuses)
        metrics = self._gate_inputs(spec, state, stored, now)
        result = step(
            spec,
            state,
            Observation(
                now=now,
                targeted=targeted,
                variants={p: (v.variant_id if v else None) for p, v in chosen.items()},
                reports=reports,
                metrics=metrics,
                commands=tuple(commands),
            ),
        )
        events: list[tuple[str, str]] = []
        desired: list[Desired] = []
        for action in result.actions:
            if isinstance(action, RecordEvent):
                events.append((action.level, action.message))
            elif isinstance(action, AssignVariant):
                profile = result.state.device(action.device_id).profile
                desired.append(self._desired(spec, action.device_id, chosen[profile]))
            elif isinstance(action, RevertDevice):
                reverted = self._revert(spec, result.state, action)
                if reverted is not None:
                    desired.append(reverted)
        if result.state == state and not events and not desired:
            return
        for level, message in events:
            log.log(logging.WARNING if level == "warning" else logging.INFO,
                    "rollout %s: %s", rollout_id, message)  # fmt: skip
        written = self.store.save_step(
            rollout_id, result.state, events, desired, expected=state, fence=fence
        )
        for event in step_events(spec.rollout_id, state, result.state, result.actions):
            announce(self.listeners, event)
        self._publish(written)

    def _choose(self, spec: RolloutSpec, profiles: set[str]) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        pinned = self.pins.load(spec.rollout_id)
        for profile in sorted(profiles):
            if pinned is not None:  # (rollouts from before pinning look the variant up)
                chosen[profile] = pinned.get(profile)
                continue
            try:
                chosen[profile] = self.variants.selected_variant(spec.model, spec.version, profile)
            except NotFound:
                chosen[profile] = None
        return chosen

    def _reports(
        self, spec: RolloutSpec, state: RolloutState, statuses: Mapping[str, Any]
    ) -> tuple[DeviceReport, ...]:
        out = []
        members = {d.device_id: d for d in state.devices}
        for device_id, st in statuses.items():
            d = members.get(device_id)
            status = _REPORT_MAP.get(st.reported_state)
            if d is None or status is None or st.desired.rollout_id != spec.rollout_id:
                continue
            variant = st.reported_variant or None
            if d.revert_requested:
                back = d.previous_variant
                cleared = not st.desired.variant_id  # nothing to go back to
                if (
                    cleared
                    or (status == "healthy" and variant == back)
                    or (back is not None and st.running_variant == back)
                ):
                    status, variant = "rolled_back", None
                elif status != "rolled_back":
                    continue
            out.append(DeviceReport(device_id, status, variant, st.reported_reason))
        return tuple(out)

    def _gate_inputs(
        self, spec: RolloutSpec, state: RolloutState, stored: StoredRollout, now: float
    ) -> GateInputs | None:
        if self.metrics is None or state.phase != "soaking" or state.soak_started_at is None:
            return None
        return gate_inputs(self.metrics, state, stored.created_ms, state.soak_started_at, now)

    def _desired(self, spec: RolloutSpec, device_id: str, variant: Any) -> Desired:
        return Desired(
            device_id, spec.model, spec.version, variant.variant_id, variant.target_path,
            variant.sha256, int(variant.size), target_of(variant), spec.rollout_id,
        )  # fmt: skip

    def _revert(self, spec: RolloutSpec, state: RolloutState, a: RevertDevice) -> Desired | None:
        """Desired state for going back to ``a.variant_id`` (the device's previous variant)."""
        empty = Desired(a.device_id, rollout_id=spec.rollout_id)
        if a.variant_id is None:
            return empty  # nothing to go back to: the device keeps what it runs
        model, _, rest = a.variant_id.partition(":")
        version_text = rest.partition(":")[0]
        profile = state.device(a.device_id).profile
        try:  # any signed target of the profile, not only the one recommended now
            variant = self.variants.variant_for(a.variant_id, profile)
        except (NotFound, ValueError):
            variant = None
        if variant is None or variant.variant_id != a.variant_id:
            log.warning("rollout %s: no target for %s to revert %s", spec.rollout_id,
                        a.variant_id, a.device_id)  # fmt: skip
            return empty
        d = self._desired(spec, a.device_id, variant)
        return replace(d, model=model, version=int(version_text))

    def _publish(self, written: Sequence[Desired]) -> None:
        if self._publisher is None:
            return
        for d in written:
            try:
                self._publisher.publish_desired(
                    d.device_id, desired_payload(d), timeout=self.config.publish_timeout_s
                )
            except EdgeFleetError as exc:  # devices still pull it over gRPC
                log.warning("desired state for %s not published over MQTT: %s", d.device_id, exc)


_COMMAND_ATTEMPTS = 3
TICKING = "ticking on this replica (it leads)"  # logged at the first tick of a term


def _equalities(selector: Sequence[Requirement]) -> dict[str, str]:
    """The selector's ``key=value`` part, for the registry to pre-filter on."""
    return {r.key: r.values[0] for r in selector if r.op == "="}


__all__ = [
    "CommandRejected",
    "ReleaseCatalogue",
    "RolloutConfig",
    "RolloutService",
    "desired_payload",
    "target_of",
]
