"""The operator-labelled audit channel: frames the cloud answered, waiting for a true label.

Every offloaded or audited frame the cloud answers is offered to ``record`` (the offload
servicer's pair listener); the newest ``max_awaiting`` wait in memory (a frame waiting when
the controller restarts is gone: the next ones take its place). ``label(key, label)`` stores
the frame with its true class in the database (``frame_labels``; labelling a frame again
replaces its label), and ``counts(model, since_ms)`` gives the accuracy estimate its labelled
frames as table counts (controller.monitoring.estimate.LabelCounts).

A frame is named ``DEVICE/FRAME_ID`` (the id the agent gave it, e.g. its source and index).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from controller.monitoring.estimate import LabelCounts
from controller.store.db import Database
from controller.store.models_labels import FrameLabelRow
from controller.store.models_models import ModelRow
from edgefleet.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from controller.services.offload import LabelledPair

MAX_KEY_CHARS = 600
DEFAULT_MAX_AWAITING = 1000


@dataclass(frozen=True)
class Frame:
    key: str
    device_id: str
    model: str
    edge_variant_id: str
    frame_id: str
    seen_ms: int
    edge_label: int
    edge_confidence: float
    cloud_label: int
    cloud_confidence: float
    audit: bool
    label: int | None = None  # the operator's, once labelled
    labelled_ms: int = 0


def _frame_of(row: FrameLabelRow) -> Frame:
    return Frame(
        row.frame_key, row.device_id, row.model, row.edge_variant_id, row.frame_id,
        row.seen_ms, row.edge_label, row.edge_confidence, row.cloud_label,
        row.cloud_confidence, row.audit, row.label, row.labelled_ms,
    )  # fmt: skip


class FrameLabels:
    def __init__(
        self,
        db: Database,
        max_awaiting: int = DEFAULT_MAX_AWAITING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._max = max_awaiting
        self._clock = clock
        self._awaiting: OrderedDict[str, Frame] = OrderedDict()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], tuple[float, LabelCounts | None]] = {}

    def record(self, pair: LabelledPair) -> None:
        """A pair listener: the frame waits for a label (the oldest waiting one leaves)."""
        key = f"{pair.device_id}/{pair.frame_id}"[:MAX_KEY_CHARS]
        if not pair.frame_id or self._max <= 0:
            return  # a frame without an id cannot be named by the operator
        frame = Frame(
            key, pair.device_id, pair.model, pair.edge_variant_id, pair.frame_id,
            int(self._clock() * 1000), pair.edge_label, pair.edge_confidence,
            pair.cloud_label, pair.cloud_confidence, pair.audit,
        )  # fmt: skip
        with self._lock:
            self._awaiting.pop(key, None)
            self._awaiting[key] = frame
            while len(self._awaiting) > self._max:
                self._awaiting.popitem(last=False)

    def awaiting(self, device_id: str = "", limit: int = 100) -> list[Frame]:
        """Frames waiting for a label, newest first."""
        with self._lock:
            frames = list(reversed(self._awaiting.values()))
        return [f for f in frames if not device_id or f.device_id == device_id][:limit]

    def labelled(self, device_id: str = "", limit: int = 100) -> list[Frame]:
        with self._db.session() as s:
            query = select(FrameLabelRow).order_by(FrameLabelRow.labelled_ms.desc()).limit(limit)
            if device_id:
                query = query.where(FrameLabelRow.device_id == device_id)
            return [_frame_of(r) for r in s.scalars(query)]

    def label(self, key: str, label: str) -> Frame:
        """Store ``key``'s true class (a class name of its model, or a class index)."""
        with self._lock:
            frame = self._awaiting.get(key)
        with self._db.session() as s:
            row = s.scalars(select(FrameLabelRow).where(FrameLabelRow.frame_key == key)).first()
            if frame is None and row is None:
                raise NotFound(f"no frame {key!r} waiting for a label (see `fleet frames`)")
            model = frame.model if frame is not None else row.model  # type: ignore[union-attr]
            index = self._class_index(s, model, label)
            now = int(self._clock() * 1000)
            if row is None:
                assert frame is not None
                row = FrameLabelRow(
                    frame_key=key, device_id=frame.device_id, model=frame.model,
                    edge_variant_id=frame.edge_variant_id, frame_id=frame.frame_id,
                    seen_ms=frame.seen_ms, edge_label=frame.edge_label,
                    edge_confidence=frame.edge_confidence, cloud_label=frame.cloud_label,
                    cloud_confidence=frame.cloud_confidence, audit=frame.audit,
                    label=index, labelled_ms=now,
                )  # fmt: skip
                s.add(row)
            else:
                row.label, row.labelled_ms = index, now
            s.flush()
            out = _frame_of(row)
        with self._lock:
            self._awaiting.pop(key, None)
            self._cache.clear()
        return out

    def class_names(self, model: str) -> list[str]:
        """The class names of the model's newest version ([] when unknown)."""
        with self._db.session() as s:
            return _names(s, model)

    @staticmethod
    def _class_index(s: object, model: str, label: str) -> int:
        names = _names(s, model)
        text = label.strip()
        if text in names:
            return names.index(text)
        if text.isdigit() and (not names or int(text) < len(names)):
            return int(text)
        known = f" (one of: {', '.join(names)})" if names else ""
        raise InvalidInput(f"{label!r} is not a class of {model or 'this model'}{known}")

    def counts(self, model: str, since_ms: int) -> LabelCounts | None:
        """The model's frames labelled since ``since_ms`` as estimate table counts (cached
        for 10 s; a new label clears the cache)."""
        now = self._clock()
        key = (model, since_ms // 60_000)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < 10.0:
                return hit[1]
        with self._db.session() as s:
            rows = list(
                s.scalars(
                    select(FrameLabelRow).where(
                        FrameLabelRow.model == model, FrameLabelRow.labelled_ms >= since_ms
                    )
                )
            )
        out = None
        if rows:
            hard = [r for r in rows if not r.audit]
            audited = [r for r in rows if r.audit]
            out = LabelCounts(
                hard=len(hard),
                hard_cloud_correct=sum(r.cloud_label == r.label for r in hard),
                audited=len(audited),
                audited_edge_correct=sum(r.edge_label == r.label for r in audited),
            )
        with self._lock:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = (now, out)
        return out


def _names(s: object, model: str) -> list[str]:
    row = s.scalars(  # type: ignore[attr-defined]
        select(ModelRow).where(ModelRow.name == model).order_by(ModelRow.version.desc())
    ).first()
    return list(row.labels or []) if row is not None else []
