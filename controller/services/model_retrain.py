"""`model retrain --from-fleet`: the fleet's hard frames back into the edge model.

The frames an edge model's fleet offloaded and the hard-example store kept
(controller.services.hard_examples), labelled by the cloud model's answers, are collected into
one ``.npz`` (``x`` frames, ``y`` cloud labels) in the artifact store, and the training runner
(controller.services.model_training) distils the next version of the edge model from its cloud
model on the original training data with those frames mixed in, starting from the current
version's weights. The new version is registered, not built or rolled out: that is the normal
path (`model build`, then a gated `rollout start`), printed as the next steps.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.services.hard_examples import HardExamples
from controller.services.models import ModelCatalogue
from edgefleet.errors import FailedPrecondition, InvalidInput

if TYPE_CHECKING:
    from controller.services.model_training import DistillReport, TrainingRunner

log = logging.getLogger(__name__)

MAX_RETRAIN_FRAMES = 100_000  # hard frames collected for one run
TrainingProgressFn = Callable[[str, float, str], None]


@dataclass(frozen=True)
class RetrainRequest:
    model: str  # the edge model
    since_ms: int = 0  # hard frames stored since then (0: all)
    data_sha256: str = ""  # the original training .npz; "": the hard frames alone
    epochs: int = 0  # 0: the training runner's default
    max_seconds: float = 0.0
    batch_size: int = 0
    augment_copies: int = 0  # the fleet's frames are real ones: no augmented copies by default


@dataclass(frozen=True)
class HardFrameSet:
    """The collected hard frames: one npz in the artifact store."""

    sha256: str
    frames: int
    skipped: int  # stored frames of another shape or dtype than the majority
    shape: tuple[int, ...]
    devices: dict[str, int]
    classes: dict[int, int]
    since_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "frames": self.frames,
            "skipped": self.skipped,
            "shape": list(self.shape),
            "devices": dict(self.devices),
            "classes": {str(k): v for k, v in sorted(self.classes.items())},
            "since_ms": self.since_ms,
        }


@dataclass(frozen=True)
class RetrainReport:
    distill: DistillReport
    hard: HardFrameSet
    started_from: str  # NAME:VERSION the weights came from
    teacher: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        ref = self.distill.model.ref
        return {
            **self.distill.to_dict(),
            "hard_frames": self.hard.to_dict(),
            "started_from": self.started_from,
            "retrain_notes": list(self.notes),
            "next_steps": [
                f"edgefleet model build {ref}",
                f"edgefleet rollout start {ref}  (staged; the default gates compare it with the "
                "devices' current version)",
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class Retrainer:
    def __init__(
        self,
        models: ModelCatalogue,
        hard_examples: HardExamples,
        training: Callable[[], TrainingRunner | None],
    ) -> None:
        self._models, self._hard, self._training = models, hard_examples, training

    def _runner(self) -> TrainingRunner:
        runner = self._training()
        if runner is None:
            raise FailedPrecondition("this controller has no training runner")
        return runner

    def check(self, request: RetrainRequest) -> tuple[str, int, str]:
        """(edge model, its latest version, the teacher's NAME) or a clear error, before any
        work: an edge model, with a cloud model, with stored hard frames."""
        if request.since_ms < 0:
            raise InvalidInput("since must be a time (unix ms >= 0)")
        self._hard.policy(request.model)  # NotFound / not an edge model
        edge = self._models.info(request.model)
        teacher = self._models.cloud_model_for(request.model)
        if teacher is None:
            raise FailedPrecondition(
                f"{request.model} has no cloud model (register one with `model add --cloud-for "
                f"{request.model}`): it is the teacher of the retrain"
            )
        if not self._hard.frames(request.model, request.since_ms, limit=1):
            counts = self._hard.counts(request.model)
            policy = self._hard.policy(request.model)
            why = (
                f"{counts.frames} stored in all, none since then"
                if counts.frames
                else "its hard-example policy is "
                + ("enabled but nothing was offloaded yet" if policy.enabled else "disabled")
            )
            raise FailedPrecondition(
                f"no hard frames stored for {request.model} ({why}); enable the policy with "
                f"`edgefleet model hard-examples {request.model} --enable`"
            )
        return edge.name, edge.version, teacher.name

    def collect(self, model: str, since_ms: int = 0) -> HardFrameSet:
        """Every stored hard frame of ``model`` since ``since_ms`` as one npz (x, y = the cloud
        labels) in the artifact store; frames of a minority shape or dtype are skipped."""
        self._hard.flush(5.0)  # frames offered just now
        stored = self._hard.frames(model, since_ms, limit=MAX_RETRAIN_FRAMES)
        pixels: list[np.ndarray] = []
        kept = []
        for frame in stored:
            try:
                pixels.append(self._hard.read(frame))
                kept.append(frame)
            except Exception as exc:  # dropped by the cap meanwhile, or unreadable
                log.warning("hard frame %s of %s unreadable: %s", frame.sha256[:12], model, exc)
        if not pixels:
            raise FailedPrecondition(f"no readable hard frames stored for {model}")
        kinds = Counter((p.shape, p.dtype.str) for p in pixels)
        (shape, dtype), _ = kinds.most_common(1)[0]
        chosen = [i for i, p in enumerate(pixels) if (p.shape, p.dtype.str) == (shape, dtype)]
        if np.dtype(dtype) != np.uint8:
            raise FailedPrecondition(
                f"the hard frames of {model} are {np.dtype(dtype)}, not uint8 pixels: "
                "training needs raw frames"
            )
        x = np.stack([pixels[i] for i in chosen])
        y = np.array([kept[i].cloud_label for i in chosen], np.int64)
        buf = io.BytesIO()
        np.savez_compressed(buf, x=x, y=y)
        ref = self._models.store.put_bytes(buf.getvalue())
        return HardFrameSet(
            sha256=str(ref.sha256),
            frames=len(chosen),
            skipped=len(stored) - len(chosen),
            shape=tuple(int(d) for d in shape),
            devices=dict(Counter(kept[i].device_id for i in chosen)),
            classes={int(k): int(v) for k, v in Counter(y.tolist()).items()},
            since_ms=since_ms,
        )

    def retrain(
        self, request: RetrainRequest, progress: TrainingProgressFn, cancel: threading.Event
    ) -> RetrainReport:
        from controller.services.model_training import DistillRequest

        runner = self._runner()
        name, version, teacher = self.check(request)
        progress("hard-examples", 0.0, f"collecting the hard frames of {name}")
        hard = self.collect(name, request.since_ms)
        progress(
            "hard-examples", 1.0,
            f"{hard.frames} hard frames from {len(hard.devices)} devices"
            + (f" ({hard.skipped} of another shape skipped)" if hard.skipped else ""),
        )  # fmt: skip
        notes: list[str] = []
        extra: tuple[str, ...]
        if request.data_sha256:
            data, extra = request.data_sha256, (hard.sha256,)
        else:
            data, extra = hard.sha256, ()
            notes.append("no original training data given: trained on the hard frames alone")
        defaults = DistillRequest(teacher=teacher)
        distill = DistillRequest(
            teacher=teacher,
            data_sha256=data,
            name=name,
            epochs=request.epochs or defaults.epochs,
            batch_size=request.batch_size or defaults.batch_size,
            max_seconds=request.max_seconds or defaults.max_seconds,
            extra_data_sha256=extra,
            init_from_version=version,
            augment_copies=request.augment_copies,
        )
        report = runner.distill(distill, progress, cancel)
        log.info(
            "retrained %s from %s:%d on %d hard frames: %s", name, name, version, hard.frames,
            report.model.ref,
        )  # fmt: skip
        return RetrainReport(report, hard, f"{name}:{version}", report.teacher, tuple(notes))
