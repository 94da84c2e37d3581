"""The hard-example store: offloaded frames kept, with their cloud labels, for retraining.

Opt-in per edge model (controller.services.hard_example_policy): ``offer`` — the offload
servicer's frame listener, on the RPC thread — keeps a frame only when its model has an
enabled policy that covers its device; everything else returns at once and nothing of it is
written. Kept frames go through a queue bounded in frames and bytes (full: dropped and
counted) to one writer
thread, which puts each as an npz (``frame``, ``cloud_label``, ``cloud_confidence``) into the
artifact store and indexes it in ``hard_examples`` (model, device, time, digest, labels,
confidences, size), so the store survives restarts and can be read back by time. After every
batch of writes the policy's cap, then the controller-wide ceiling (``ceiling_bytes``, 0 =
none), drop the oldest frames; every ``sweep_s`` the retention drops expired ones. Drops are
counted and logged.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
from sqlalchemy import delete, func, select

from controller.monitoring.events import FleetEvent
from controller.services.hard_example_frames import (
    BlobStore,
    HardFrame,
    decode_frame,
    encode_frame,
    frame_of,
    policy_of,
)
from controller.services.hard_example_policy import HardExamplePolicy, PolicyChange, StoredCounts
from controller.services.offload import LabelledPair
from controller.store.db import Database
from controller.store.models_hard_examples import HardExamplePolicyRow, HardExampleRow
from controller.store.models_models import ModelRow
from edgefleet.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

DEFAULT_QUEUE = 256  # frames waiting for the writer
POLICY_CACHE_S = 5.0  # policies re-read this often (another replica may have changed one)
DEVICE_CACHE_S = 30.0  # device labels re-read this often
MAX_CACHED_DEVICES = 10_000
MAX_FRAME_BYTES = 4 * 1024 * 1024  # one stored frame at most (its pixels, and its npz)
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # pixels waiting for the writer, all frames together


DeviceLabels = Callable[[str], Mapping[str, str] | None]  # device id -> labels (None: unknown)


class HardExamples:
    def __init__(
        self,
        db: Database,
        artifacts: BlobStore,
        device_labels: DeviceLabels,
        ceiling_bytes: int = 0,
        queue_size: int = DEFAULT_QUEUE,
        sweep_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db, self._artifacts, self._device_labels = db, artifacts, device_labels
        self.ceiling_bytes = ceiling_bytes
        self._queue: queue.Queue[tuple[LabelledPair, np.ndarray, float] | None] = queue.Queue(
            queue_size
        )
        self._sweep_s, self._clock = sweep_s, clock
        self._lock = threading.Lock()
        self._policies: dict[str, HardExamplePolicy] = {}
        self._policies_read = -1e9
        self._devices: dict[str, tuple[float, Mapping[str, str] | None]] = {}
        self._dropped: dict[str, StoredCounts] = {}
        self._pending = 0  # offered, not yet written (or refused)
        self._queued_bytes = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    # -- policies ----------------------------------------------------------------------------
    def policy(self, model: str) -> HardExamplePolicy:
        """The model's policy (a disabled default when none was set); NotFound for a name that
        is no registered edge model."""
        with self._db.session() as s:
            self._check_edge_model(s, model)
            row = s.get(HardExamplePolicyRow, model)
            return policy_of(row) if row is not None else HardExamplePolicy(model)

    def policies(self) -> dict[str, HardExamplePolicy]:
        with self._db.session() as s:
            return {r.model: policy_of(r) for r in s.scalars(select(HardExamplePolicyRow))}

    def set_policy(self, model: str, change: PolicyChange) -> HardExamplePolicy:
        change.check()
        now_ms = int(self._clock() * 1000)
        with self._db.session() as s:
            self._check_edge_model(s, model)
            row = s.get(HardExamplePolicyRow, model)
            old = policy_of(row) if row is not None else HardExamplePolicy(model)
            new = change.applied_to(old, now_ms)
            if row is None:
                row = HardExamplePolicyRow(model=model)
                s.add(row)
            row.enabled, row.max_bytes, row.retention_s = (
                new.enabled,
                new.max_bytes,
                new.retention_s,
            )
            row.device_ids, row.device_labels = list(new.device_ids), dict(new.device_labels)
            row.created_ms, row.updated_ms = new.created_ms, new.updated_ms
        log.info("hard-example policy of model=%s: %s", model, new.to_dict())
        with self._lock:
            self._policies_read = -1e9  # re-read at the next offer
        if change.purge:
            self._purge(model)
        self.enforce(model)
        return new

    @staticmethod
    def _check_edge_model(s: object, model: str) -> None:
        query = select(ModelRow.role).where(ModelRow.name == model).limit(1)
        role = s.scalar(query)  # type: ignore[attr-defined]
        if role is None:
            raise NotFound(f"no model {model!r}")
        if role != "edge":
            raise InvalidInput(f"{model!r} is a cloud model: hard examples are an edge model's")

    # -- the frame listener ------------------------------------------------------------------
    def offer(self, pair: LabelledPair, frame: np.ndarray) -> None:
        """Queue an offloaded frame for keeping, if its model's policy covers its device.
        Quick and never raising (called on the RPC thread); audits (random easy frames) are
        not hard examples and are never kept."""
        if pair.audit:
            return
        policy = self._cached_policy(pair.model)
        if policy is None or not policy.enabled:
            return
        if not policy.covers(pair.device_id, self._cached_labels(pair.device_id)):
            return
        size = int(frame.nbytes)
        with self._lock:
            full = size > MAX_FRAME_BYTES or self._queued_bytes + size > MAX_QUEUED_BYTES
            if not full:
                self._pending += 1
                self._queued_bytes += size
        if full:
            self._count(pair.model, dropped_busy=1)
            return
        try:
            self._queue.put_nowait((pair, frame, self._clock()))
        except queue.Full:
            self._count(pair.model, dropped_busy=1)
            self._done([frame])

    def _cached_policy(self, model: str) -> HardExamplePolicy | None:
        now = time.monotonic()
        with self._lock:
            if now - self._policies_read < POLICY_CACHE_S:
                return self._policies.get(model)
        try:
            policies = self.policies()
        except Exception:
            log.exception("reading hard-example policies failed")
            policies = {}
        with self._lock:
            self._policies, self._policies_read = policies, now
            return policies.get(model)

    def _cached_labels(self, device_id: str) -> Mapping[str, str] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._devices.get(device_id)
            if hit is not None and now - hit[0] < DEVICE_CACHE_S:
                return hit[1]
        try:
            labels = self._device_labels(device_id)
        except Exception:
            labels = None
        with self._lock:
            if len(self._devices) >= MAX_CACHED_DEVICES:
                self._devices.clear()
            self._devices[device_id] = (now, labels)
        return labels

    def device_changed(self, event: FleetEvent) -> None:
        """A registry listener: a relabelled or revoked device's labels are read again at its
        next frame (not after the cache's DEVICE_CACHE_S), so a narrowed policy holds at once."""
        if event.device_id:
            with self._lock:
                self._devices.pop(event.device_id, None)

    # -- the writer --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hard-examples", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._thread = None

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every offered frame is written (tests, the bench, a retrain)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _done(self, frames: list[np.ndarray]) -> None:
        with self._idle:
            self._pending -= len(frames)
            self._queued_bytes -= sum(int(f.nbytes) for f in frames)
            if self._pending <= 0:
                self._idle.notify_all()

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while True:
            batch: list[tuple[LabelledPair, np.ndarray, float]] = []
            stopping = False
            with contextlib.suppress(queue.Empty):
                item = self._queue.get(timeout=max(1.0, self._sweep_s))
                while item is not None:
                    batch.append(item)
                    if len(batch) >= 64:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                stopping = item is None
            if batch:
                self._write(batch)
            if stopping:
                return
            if time.monotonic() - last_sweep >= self._sweep_s:
                last_sweep = time.monotonic()
                self._safely(self.enforce)

    def _safely(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:  # the writer must outlive a database or store hiccup
            log.exception("hard-example store failed")

    def _write(self, batch: list[tuple[LabelledPair, np.ndarray, float]]) -> None:
        try:
            rows = []
            for pair, frame, at in batch:
                data = encode_frame(frame, pair.cloud_label, pair.cloud_confidence)
                if len(data) > MAX_FRAME_BYTES:
                    continue
                digest = str(self._artifacts.put_bytes(data).sha256)
                rows.append(
                    HardExampleRow(
                        model=pair.model,
                        device_id=pair.device_id,
                        stored_ms=int(at * 1000),
                        sha256=digest,
                        size_bytes=len(data),
                        frame_id=pair.frame_id[:256],
                        edge_variant_id=pair.edge_variant_id[:256],
                        cloud_label=pair.cloud_label,
                        cloud_confidence=pair.cloud_confidence,
                        edge_label=pair.edge_label,
                        edge_confidence=pair.edge_confidence,
                    )
                )
            with self._db.session() as s:
                s.add_all(rows)
            for model in {r.model for r in rows}:
                self.enforce(model)
        except Exception:
            log.exception("storing %d hard examples failed", len(batch))
        finally:
            self._done([frame for _, frame, _ in batch])

    # -- bounds ------------------------------------------------------------------------------
    def enforce(self, model: str | None = None) -> int:
        """Apply retention and caps (one model's, or every policy's), oldest first; returns how
        many frames were dropped."""
        now_ms = int(self._clock() * 1000)
        policies = self.policies()
        models = [model] if model is not None else sorted(policies)
        dropped = 0
        for name in models:
            policy = policies.get(name) or HardExamplePolicy(name)
            if policy.retention_s > 0:
                n = self._drop(name, older_than_ms=now_ms - policy.retention_s * 1000)
                if n:
                    self._count(name, dropped_retention=n)
                    log.info("hard examples of model=%s: %d past the retention dropped", name, n)
                dropped += n
            n = self._drop(name, over_bytes=policy.max_bytes)
            if n:
                self._count(name, dropped_cap=n)
                log.info("hard examples of model=%s: %d oldest dropped for the cap", name, n)
            dropped += n
        if self.ceiling_bytes > 0:
            n = self._drop(None, over_bytes=self.ceiling_bytes)
            dropped += n
            if n:
                log.info("hard examples: %d oldest dropped for the controller ceiling", n)
        return dropped

    def _drop(
        self, model: str | None, older_than_ms: int | None = None, over_bytes: int | None = None
    ) -> int:
        r = HardExampleRow
        with self._db.session() as s:
            scope = select(r.id, r.size_bytes, r.sha256, r.model)
            if model is not None:
                scope = scope.where(r.model == model)
            if older_than_ms is not None:
                victims = list(s.execute(scope.where(r.stored_ms < older_than_ms)))
            else:
                assert over_bytes is not None
                total_q = select(func.coalesce(func.sum(r.size_bytes), 0))
                if model is not None:
                    total_q = total_q.where(r.model == model)
                excess = int(s.scalar(total_q) or 0) - over_bytes
                victims = []
                if excess > 0:
                    for row in s.execute(scope.order_by(r.stored_ms, r.id)):
                        victims.append(row)
                        excess -= row.size_bytes
                        if excess <= 0:
                            break
            if not victims:
                return 0
            ids = [v.id for v in victims]
            for start in range(0, len(ids), 500):
                s.execute(delete(r).where(r.id.in_(ids[start : start + 500])))
            digests = {v.sha256 for v in victims}
            still = set(s.scalars(select(r.sha256).where(r.sha256.in_(digests))))
        for digest in digests - still:  # identical frames share one blob
            with contextlib.suppress(Exception):
                self._artifacts.delete(digest)
        for name in {v.model for v in victims} - ({model} if model else set()):
            self._count(name, dropped_cap=sum(1 for v in victims if v.model == name))
        return len(victims)

    def _purge(self, model: str) -> None:
        n = self._drop(model, older_than_ms=2**62)
        log.info("hard examples of model=%s: %d purged by the operator", model, n)

    def _count(self, model: str, **more: int) -> None:
        with self._lock:
            c = self._dropped.get(model, StoredCounts())
            self._dropped[model] = replace(c, **{k: getattr(c, k) + v for k, v in more.items()})

    # -- reading -----------------------------------------------------------------------------
    def counts(self, model: str) -> StoredCounts:
        r = HardExampleRow
        with self._db.session() as s:
            n, size, oldest, newest = s.execute(
                select(
                    func.count(r.id), func.coalesce(func.sum(r.size_bytes), 0),
                    func.min(r.stored_ms), func.max(r.stored_ms),
                ).where(r.model == model)
            ).one()  # fmt: skip
        with self._lock:
            dropped = self._dropped.get(model, StoredCounts())
        return replace(
            dropped,
            frames=int(n or 0),
            bytes=int(size or 0),
            oldest_ms=int(oldest or 0),
            newest_ms=int(newest or 0),
        )

    def frames(self, model: str, since_ms: int = 0, limit: int = 100_000) -> list[HardFrame]:
        """The stored frames of ``model`` since ``since_ms``, oldest first."""
        r = HardExampleRow
        with self._db.session() as s:
            query = (
                select(r)
                .where(r.model == model, r.stored_ms >= since_ms)
                .order_by(r.stored_ms, r.id)
                .limit(limit)
            )
            return [frame_of(row) for row in s.scalars(query)]

    def read(self, frame: HardFrame) -> np.ndarray:
        """The stored pixels of one frame (from the artifact store)."""
        with self._artifacts.open(frame.sha256) as f:
            return decode_frame(f.read())
