"""The agent's OTA component: desired state in (MQTT push and gRPC pull), verified A/B
update, model swap, probation, reports out.

Flow for a desired target: preflight against signed TUF metadata (refuse early, and take
length and sha256 from the signed target, never from the message) -> ``Updater.apply``
(resumable download with retries, hash and TUF check, install into the spare slot, smoke
test, atomic activation) -> swap the running model -> probation (crash, error rate or
latency regression rolls back locally) -> commit. Every refusal keeps the current model and
is reported with its reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.ota import machine as m
from agent.ota.desired import claimed_target, disagreements
from agent.ota.errors import OtaError
from agent.ota.slots import SlotStore
from agent.ota.updater import Updater, UpdateStatus
from edgefleet.errors import EdgeFleetError, Unavailable
from edgefleet.updates import VerifiedTarget

log = logging.getLogger(__name__)


class DesiredSource(Protocol):
    def get(self, current_variant: str | None) -> dict[str, Any] | None: ...

    def report(
        self, state: str, variant_id: str | None, reason: str, current: str | None, revision: int
    ) -> None: ...


class Verifier(Protocol):
    def preflight(self, target: Mapping[str, Any]) -> VerifiedTarget: ...

    def verify_target(self, target: Mapping[str, Any]) -> VerifiedTarget: ...

    def verify_file(self, target: Mapping[str, Any], path: Path) -> None: ...


@dataclass(frozen=True)
class OtaConfig:
    poll_interval_s: float = 30.0
    tick_interval_s: float = 1.0
    update: m.UpdateConfig = field(default_factory=m.UpdateConfig)


class OtaService:
    def __init__(
        self,
        store: SlotStore,
        *,
        desired: DesiredSource,
        chunks: Callable[[m.TargetInfo, int], Iterator[bytes]],
        verifier: Verifier,
        smoke_test: Callable[[Path], None],
        on_model_update: Callable[[Path], object] = lambda _p: None,
        config: OtaConfig | None = None,
    ) -> None:
        self.store, self._desired, self._verifier = store, desired, verifier
        self._swap = on_model_update
        self.config = config or OtaConfig()
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._revision = 0
        self._handled: tuple[str, int] | None = None
        self._last_report: UpdateStatus | None = None
        self.reports: list[UpdateStatus] = []  # newest last, bounded
        self.refused: Counter[str] = Counter()  # desired states refused, by kind
        self.updater = Updater(
            store,
            fetch_chunks=chunks,
            verify=verifier.verify_file,
            smoke_test=smoke_test,
            report=self._report,
            config=self.config.update,
            sleep=self._sleep,
        )

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # -- lifecycle --------------------------------------------------------------------------
    def recover(self) -> Path | None:
        """At start, before loading a model: the verified slot to run (None: no model yet)."""
        recovery = self.store.recover()
        self.updater.resume(recovery)
        for event in recovery.events:
            if event.startswith("rolled back"):
                self._report(UpdateStatus("rolled_back", None, event))
        return recovery.slot.path if recovery.slot is not None else None

    @property
    def current_variant(self) -> str | None:
        slot = self.store.state().active
        if slot is None:
            return None
        try:
            return self.store.verify_slot(slot, rehash_model=False).variant_id
        except OtaError:
            return None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ota", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- inputs -----------------------------------------------------------------------------
    def submit(self, desired: bytes | Mapping[str, Any]) -> None:
        """Queue a desired state (MQTT callback or pull); the oldest is dropped when full."""
        while True:
            try:
                self._inbox.put_nowait(desired)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._inbox.get_nowait()

    def observe(self, metrics: m.ProbationMetrics) -> None:
        """Inference health of the running model (the daemon calls this per interval)."""
        with self._lock:
            if self.updater.state.phase == "probation":
                self.updater.observe(metrics)
                self._after_probation_step()

    def tick(self) -> None:
        """Let time pass: commit after probation, or start a failed download's next round."""
        with self._lock:
            state = self.updater.state
            if state.phase == "probation":
                self.updater.tick()
                self._after_probation_step()
            elif state.phase == "failed" and state.retry_at is not None:
                self.updater.tick()
                self._after_apply()

    # -- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        next_pull = 0.0  # pull at connect
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_pull:
                self._pull()
                next_pull = now + self.config.poll_interval_s
            try:
                item = self._inbox.get(timeout=self.config.tick_interval_s)
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    self.handle(item)
                self.tick()
            except Exception:  # never let a bad message kill the update loop
                log.exception("OTA step failed")

    def _pull(self) -> None:
        try:
            desired = self._desired.get(self.current_variant)
        except EdgeFleetError as exc:
            log.info("desired state pull failed: %s", exc)
            return
        if desired is not None:
            self.submit(desired)
        if self._last_report is not None:
            self._send(self._last_report)  # the controller may have missed it

    def handle(self, item: bytes | Mapping[str, Any]) -> None:
        """Act on one desired state (also callable directly, e.g. from tests)."""
        with self._lock:
            self._handle(item)

    def _handle(self, item: bytes | Mapping[str, Any]) -> None:
        desired: Any = item
        if isinstance(item, bytes | bytearray):
            try:
                desired = json.loads(item)
            except ValueError as exc:
                self._report(UpdateStatus("failed", None, f"refused desired state: {exc}"))
                return
        if not isinstance(desired, Mapping):
            self._report(UpdateStatus("failed", None, "refused desired state: not an object"))
            return
        key = (str(desired.get("rollout_id", "")), _int(desired.get("revision")))
        variant = str(desired.get("variant_id") or "")
        if not variant or key == self._handled:
            return  # nothing assigned, or already acted on this revision
        if key[1] < self._revision:
            return  # an older message (MQTT and pull race)
        self._handled, self._revision = key, key[1]
        phase = self.updater.state.phase
        if variant == self.current_variant and phase not in m.BUSY | {"probation"}:
            self._report(UpdateStatus("committed", variant, "already running"))
            return
        if self._switch_to_previous(variant):
            return
        try:
            claimed = claimed_target(desired)
            signed = self._verifier.preflight(claimed)
            target = m.TargetInfo.from_signed(signed)
        except Unavailable as exc:
            self._handled = None  # transient: try again at the next pull
            log.info("update metadata unavailable: %s", exc)
            return
        except (EdgeFleetError, KeyError, TypeError, ValueError) as exc:
            self._refuse("unverified", variant, f"verification failed: {exc}")
            return
        differ = disagreements(desired, target)
        if differ:
            why = f"desired state disagrees with the signed target on {', '.join(differ)}"
            self._refuse("mismatch", variant, f"verification failed: {why}")
            return
        self.updater.apply(target)
        self._after_apply()

    def _refuse(self, kind: str, variant: str | None, reason: str) -> None:
        """A desired state refused before any download: counted, logged and reported."""
        self.refused[kind] += 1
        log.warning("refused desired state for %s: %s", variant, reason)
        self._report(UpdateStatus("failed", variant, reason))

    def _switch_to_previous(self, variant: str) -> bool:
        """Going back to the variant in the previous slot needs no download, but the slot
        must still be exactly a signed target: bytes re-hashed against its manifest, and its
        target and variant metadata checked against freshly verified TUF metadata."""
        state = self.store.state()
        if state.previous is None or state.probation is not None:
            return False
        try:
            if self.store.verify_slot(state.previous, rehash_model=False).variant_id != variant:
                return False
            slot = self.store.verify_slot(state.previous)  # the model re-hashed too
            self._verifier.verify_target(slot.target)
            self.store.activate(state.previous, rehash_model=False)  # re-hashed just above
            self.store.commit()
        except Unavailable as exc:
            log.warning("cannot re-verify the previous slot (%s); downloading %s", exc, variant)
            return False
        except (EdgeFleetError, KeyError, TypeError) as exc:
            self.refused["previous_slot"] += 1
            log.warning("previous slot unusable (%s); downloading %s", exc, variant)
            return False
        self.updater.state = m.UpdateState(current_variant=variant)
        self._swap_to_active()
        self._report(UpdateStatus("committed", variant, "switched back to the previous slot"))
        return True

    def _after_apply(self) -> None:
        if self.updater.state.phase != "probation":
            return
        try:
            self._swap_to_active()
        except Exception as exc:  # the new model does not run here: roll back now
            log.error("model swap failed: %s", exc)
            self.updater.observe(m.ProbationMetrics(frames=0, crashed=True))
            self._after_probation_step()

    def _after_probation_step(self) -> None:
        if self.updater.state.phase == "rolled_back":
            self.updater.state = m.UpdateState(current_variant=self.current_variant)
            self._swap_to_active()

    def _swap_to_active(self) -> None:
        slot = self.store.state().active
        if slot is not None:
            self._swap(self.store.slot_dir(slot))

    # -- reports ----------------------------------------------------------------------------
    def _report(self, status: UpdateStatus) -> None:
        self.reports = [*self.reports[-63:], status]
        if status.phase in ("committed", "failed", "rolled_back"):
            self._last_report = status
        self._send(status)

    def _send(self, status: UpdateStatus) -> None:
        try:
            self._desired.report(
                status.phase, status.variant_id, status.reason, self.current_variant,
                self._revision,
            )  # fmt: skip
        except EdgeFleetError as exc:
            log.info("update report not delivered (%s); will resend", exc)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
