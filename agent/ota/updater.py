"""The thin shell around the update machine: it fetches, writes, verifies and reports.

Every collaborator is injected, so the agent runtime plugs in the real ones (TUF verifier,
gRPC/HTTP fetcher, ONNX Runtime smoke test, MQTT/gRPC status report) and tests plug fakes.
Whatever goes wrong, the agent keeps its current model and reports why.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.ota import machine as m
from agent.ota.errors import DiskFull, OtaError, SlotCorrupted
from agent.ota.slots import Recovery, SlotStore
from agent.ota.smoke import SmokeRun, make_smoke_test
from edgefleet.errors import EdgeFleetError, InvalidInput, VerificationError
from edgefleet.updates import StreamDigest

log = logging.getLogger(__name__)

__all__ = ["SmokeRun", "UpdateStatus", "Updater", "make_smoke_test"]

FetchChunks = Callable[[m.TargetInfo, int], Iterator[bytes]]
VerifyFn = Callable[[Mapping[str, Any], Path], None]  # raises VerificationError


@dataclass(frozen=True)
class UpdateStatus:
    phase: str
    variant_id: str | None
    reason: str = ""


class Updater:
    def __init__(
        self,
        store: SlotStore,
        *,
        fetch_chunks: FetchChunks,
        verify: VerifyFn,
        smoke_test: Callable[[Path], None],
        report: Callable[[UpdateStatus], None],
        config: m.UpdateConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        current_variant: str | None = None,
    ) -> None:
        self.store = store
        self._fetch_chunks, self._verify, self._smoke = fetch_chunks, verify, smoke_test
        self._report, self._clock, self._sleep = report, clock, sleep
        self.config = config or m.UpdateConfig()
        self.state = m.UpdateState(current_variant=current_variant)
        self._events: deque[m.Event] = deque()
        self._digest: StreamDigest | None = None  # of the download in progress

    # -- entry points ---------------------------------------------------------------------
    def apply(self, desired: m.TargetInfo | Mapping[str, Any]) -> m.UpdateState:
        """Run an update for a target (verified ``TargetInfo``, or target info to validate)
        as far as probation.

        Returns in phase ``probation`` (new model active, awaiting ``observe``/``tick``),
        ``failed`` (current model kept; reason reported) or unchanged (nothing to do).
        """
        try:
            target = (
                desired if isinstance(desired, m.TargetInfo) else m.TargetInfo.from_dict(desired)
            )
        except InvalidInput as exc:
            reason = f"refused desired state: {exc}"
            log.warning(reason)
            self._report(UpdateStatus("failed", None, reason))
            return self.state
        offset = self.store.download_offset(target.sha256)
        self._run(m.DesiredState(target, self._clock(), offset))
        return self.state

    def resume(self, recovery: Recovery) -> m.UpdateState:
        """After a restart: continue the probation ``recover()`` left running, if any."""
        slot, probation = recovery.slot, recovery.state.probation
        if slot is None:
            return self.state
        if probation is None or probation.slot != slot.name:
            self.state = m.UpdateState(current_variant=slot.variant_id)
            return self.state
        target = m.TargetInfo.from_dict(slot.target)
        until = self._clock() + self.config.probation_seconds
        self.state = m.UpdateState("probation", target, target.length, probation_until=until)
        return self.state

    def observe(self, metrics: m.ProbationMetrics) -> m.UpdateState:
        """Feed inference health of the new model during probation."""
        return self._run(metrics)

    def tick(self) -> m.UpdateState:
        """Let time pass: commits after a clean probation."""
        return self._run(m.Timer(self._clock()))

    # -- the loop -------------------------------------------------------------------------
    def _run(self, event: m.Event) -> m.UpdateState:
        self._events.append(event)
        while self._events:
            self.state, actions = m.transition(self.config, self.state, self._events.popleft())
            for action in actions:
                self._do(action)
        return self.state

    def _emit(self, event: m.Event) -> None:
        self._events.append(event)

    def _do(self, action: m.Action) -> None:
        match action:
            case m.Report(phase=phase, variant_id=vid, reason=reason):
                log.info("update %s: %s %s", vid, phase, reason)
                self._report(UpdateStatus(phase, vid, reason))
            case m.Fetch(target=t, offset=offset):
                self._fetch(t, offset)
            case m.Wait(until=until):
                self._sleep(max(0.0, until - self._clock()))
                self._emit(m.Timer(self._clock()))
            case m.DiscardDownload(target=t):
                self._digest = None
                self.store.download_path(t.sha256).unlink(missing_ok=True)
            case m.Verify(target=t):
                self._check(t)
            case m.WriteSlot(target=t):
                self._write_slot(t)
            case m.RunSmokeTest(target=t):
                self._smoke_test(t)
            case m.Activate():  # the slot just written from bytes verified while streaming
                self.store.activate(self.store.inactive_slot(), rehash_model=False)
                self._emit(m.Activated(self._clock()))
            case m.Commit():
                self.store.commit()
            case m.Rollback(reason=reason):
                try:
                    self.store.rollback(reason)
                except SlotCorrupted as exc:
                    log.error("rollback impossible: %s", exc)

    def _fetch(self, t: m.TargetInfo, offset: int) -> None:
        self.store.discard_downloads(keep=t.sha256)
        try:
            with self.store.open_download(t.sha256, offset) as fh:
                try:
                    digest = self._digest_at(t, offset)
                    for chunk in self._fetch_chunks(t, offset):
                        self.store.append(fh, chunk)
                        event = m.ChunkReceived(len(chunk))
                        self.state, actions = m.transition(self.config, self.state, event)
                        if self.state.phase != "downloading":  # refused mid-stream
                            fh.flush()
                            for action in actions:
                                self._do(action)
                            return
                        digest.update(chunk)  # hashed once, as it is written
                finally:
                    fh.flush()
                    os.fsync(fh.fileno())
        except DiskFull as exc:
            self._emit(m.DownloadFailed(str(exc), self._clock(), retryable=False))
            return
        except (OSError, EdgeFleetError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._emit(m.DownloadFailed(f"disk full: {exc}", self._clock(), retryable=False))
            else:
                self._emit(m.DownloadFailed(f"fetch failed: {exc}", self._clock()))
            return
        self._emit(m.DownloadComplete(self._clock()))

    def _digest_at(self, t: m.TargetInfo, offset: int) -> StreamDigest:
        """The running digest of ``t``'s download at ``offset``: the one fed while streaming,
        or (resuming after a restart) one seeded once from the bytes already on disk."""
        d = self._digest
        if d is not None and d.expected_sha256 == t.sha256 and d.received == offset:
            return d
        d = StreamDigest(t.length, t.sha256)
        if offset:
            with self.store.download_path(t.sha256).open("rb") as fh:
                while len(block := fh.read(min(1 << 20, offset - d.received))) > 0:
                    d.update(block)
            if d.received != offset:
                raise OSError(f"partial download shorter than {offset} bytes")
        self._digest = d
        return d

    def _check(self, t: m.TargetInfo) -> None:
        """Length and sha256 as hashed while streaming (once), then the verify hook."""
        path = self.store.download_path(t.sha256)
        try:
            digest = self._digest_at(t, path.stat().st_size)
            self._digest = None
            digest.finish()
            self._verify(t.raw, path)
        except VerificationError as exc:
            self._emit(m.VerificationFailed(str(exc)))
            return
        except OSError as exc:
            self._emit(m.VerificationFailed(f"download unreadable: {exc}"))
            return
        self._emit(m.VerificationOk())

    def _write_slot(self, t: m.TargetInfo) -> None:
        try:
            slot = self.store.install(t.raw, t.model_file, json.dumps(dict(t.metadata), indent=2))
        except (OtaError, OSError) as exc:  # never left in "installing" with nothing said
            self._emit(m.WriteFailed(str(exc)))
            return
        self._emit(m.WriteOk(slot.name))

    def _smoke_test(self, t: m.TargetInfo) -> None:
        try:
            self._smoke(self.store.slot_dir(self.store.inactive_slot()))
        except (OtaError, EdgeFleetError) as exc:
            self._emit(m.SmokeFailed(str(exc)))
            return
        except Exception as exc:  # an injected loader may raise anything: never activate then
            self._emit(m.SmokeFailed(f"{type(exc).__name__}: {exc}"))
            return
        self._emit(m.SmokeOk())
