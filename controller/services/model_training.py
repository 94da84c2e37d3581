"""The training runner: distil a student from a registered teacher and register it as the next
version of an edge model, one run at a time, cancellable, bounded in time and memory.

    runner = TrainingRunner(catalogue, workdir)
    report = runner.distill(DistillRequest("fashion-cloud", student="mobilenet-w1.0",
                                           data_sha256=digest), progress, cancel)

Phases (``progress(phase, fraction, message)``): data (teacher's sources and the uploaded
frames), teacher (its logits on the training frames, cached under ``workdir``), train,
export (ONNX, parity with torch, accuracy and latency measured), register. A version is
registered only after every check passed: a cancelled, timed-out or failed run leaves the
catalogue as it was. torch is imported when a run starts, never when the runner is built.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.services.model_views import ModelInfo
from controller.services.models import ModelCatalogue
from controller.training.errors import TrainingCancelled, TrainingDataError, TrainingTimedOut
from controller.training.loop import FitReport
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.modelmeta import Preprocessing

log = logging.getLogger(__name__)

PHASES = ("data", "teacher", "train", "export", "register")
CALIBRATION_FRAMES = 500
MAX_TRAIN_FRAMES = 200_000  # uploaded frames of one run, extra data included
MAX_EXTRA_DATA = 16
# (phase, fraction of the phase 0..1, message)
TrainingProgressFn = Callable[[str, float, str], None]


@dataclass(frozen=True)
class DistillRequest:
    teacher: str  # model name of the teacher (a registered model)
    teacher_version: int = 0  # 0 = latest
    student: str = ""  # a catalogue architecture name (controller/training/catalogue.py)
    data_sha256: str = ""  # uploaded training .npz (x, y) in the artifact store
    name: str = ""  # edge model to register the student under; "" = f"{teacher}-student"
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 10
    batch_size: int = 128
    max_seconds: float = 3600.0
    extra_data_sha256: tuple[str, ...] = ()  # more .npz frames (x, y) mixed in
    init_from_version: int = 0  # >0: start from that version of `name` instead of a fresh student
    augment_copies: int = 1  # fixed augmented copies of every frame the teacher answers once
    seed: int = 0

    @property
    def target(self) -> str:
        return self.name or f"{self.teacher}-student"


@dataclass(frozen=True)
class DistillReport:
    model: ModelInfo  # the registered version
    teacher: str  # NAME:VERSION
    student: str  # the architecture, or NAME:VERSION it started from
    alpha: float
    temperature: float
    train_frames: int  # uploaded frames (extra data included)
    trained_frames: int  # with the augmented copies
    validation_frames: int
    student_accuracy: float  # on the teacher's validation set
    teacher_accuracy: float
    latency_ms: float  # the student, batch 1, ONNX Runtime, 1 thread
    parameters: int
    phase_seconds: dict[str, float]
    fit: FitReport
    input_size: tuple[int, int] = (0, 0)
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = {
            "name": self.model.name,
            "version": self.model.version,
            "ref": self.model.ref,
        }
        out["fit"] = self.fit.to_dict()
        out["phase_seconds"] = {k: round(v, 2) for k, v in self.phase_seconds.items()}
        out["wall_seconds"] = round(sum(self.phase_seconds.values()), 2)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class _Clock:
    """Phase timing and the run's deadline, checked between and inside phases."""

    def __init__(self, max_seconds: float, cancel: threading.Event) -> None:
        self.began = time.monotonic()
        self.deadline = self.began + max_seconds
        self.max_seconds, self.cancel = max_seconds, cancel
        self.seconds: dict[str, float] = {}
        self._phase, self._phase_began = "", self.began

    def phase(self, name: str) -> None:
        self.check()
        now = time.monotonic()
        if self._phase:
            self.seconds[self._phase] = now - self._phase_began
        self._phase, self._phase_began = name, now

    def end(self) -> None:
        if self._phase:
            self.seconds[self._phase] = time.monotonic() - self._phase_began

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.cancel.is_set():
            raise TrainingCancelled("training cancelled: nothing was registered")
        if time.monotonic() > self.deadline:
            raise TrainingTimedOut(
                f"training passed its bound of {self.max_seconds:.0f} s in phase "
                f"{self._phase or 'data'}: nothing was registered"
            )


class TrainingRunner:
    def __init__(self, catalogue: ModelCatalogue, workdir: Path, *, threads: int = 1) -> None:
        """``threads``: torch's and the teacher's; 1 by default, because 2 threads spin-wait
        badly on a loaded 2-core machine (140 ms a step against 37 ms with 1, measured)."""
        self.catalogue = catalogue
        self.threads = threads
        self.workdir = Path(workdir)
        self.cache_dir = self.workdir / "teacher-logits"
        self._slot = threading.Lock()  # training is CPU-heavy: one run at a time

    # -- checks before anything runs ---------------------------------------------------------
    def check(self, request: DistillRequest) -> ModelInfo:
        """Every check that needs no training: the train extra, the architecture, the
        numbers, the teacher; returns the teacher's version."""
        from controller.training.catalogue import architecture
        from controller.training.torch_model import require

        if request.init_from_version <= 0:
            architecture(request.student)  # UnknownArchitecture lists the known ones
        self._fit_config(request, request.max_seconds)
        if not request.data_sha256:
            raise TrainingDataError("distillation needs training frames (an uploaded .npz)")
        if len(request.extra_data_sha256) > MAX_EXTRA_DATA:
            raise TrainingDataError(f"at most {MAX_EXTRA_DATA} extra training data files")
        if not 0 <= request.augment_copies <= 4:
            raise InvalidInput("augment copies must be 0..4")
        teacher = self.catalogue.info(request.teacher, request.teacher_version)
        if request.init_from_version > 0:
            self.catalogue.info(request.target, request.init_from_version)
        require("torch")
        require("onnx")  # onnx2torch (init_from_version) is checked when the run loads it
        return teacher

    def _fit_config(self, request: DistillRequest, max_seconds: float) -> Any:
        from controller.training.loop import FitConfig

        return FitConfig(
            epochs=request.epochs,
            batch_size=request.batch_size,
            learning_rate=4e-3,
            temperature=request.temperature,
            alpha=request.alpha,
            max_seconds=max(max_seconds, 1e-3),
            seed=request.seed,
            threads=self.threads,
        )

    # -- a run -------------------------------------------------------------------------------
    def distill(
        self,
        request: DistillRequest,
        progress: TrainingProgressFn,
        cancel: threading.Event,
    ) -> DistillReport:
        teacher = self.check(request)
        clock = _Clock(request.max_seconds, cancel)
        if not self._slot.acquire(blocking=False):
            progress("data", 0.0, "waiting for the training run in progress to end")
            while not self._slot.acquire(timeout=0.5):
                clock.check()
        try:
            with tempfile.TemporaryDirectory(dir=self.catalogue.workdir) as tmp:
                return self._distill(request, teacher, progress, clock, Path(tmp))
        finally:
            self._slot.release()

    def _distill(
        self,
        request: DistillRequest,
        teacher: ModelInfo,
        progress: TrainingProgressFn,
        clock: _Clock,
        tmp: Path,
    ) -> DistillReport:
        from controller.training import distill as d
        from controller.training.catalogue import architecture
        from controller.training.teacher import teacher_logits
        from controller.training.torch_model import export_onnx, onnx_to_torch

        clock.phase("data")
        files = self.catalogue.materialise_sources(
            tmp, teacher.source_sha256, teacher.validation_sha256, ""
        )
        teacher_pre = Preprocessing.from_dict(teacher.preprocessing)
        train = self._training_frames(request, tmp, teacher.num_classes)
        validation = self._frames(files["validation"], "the teacher's validation data")
        if validation.x.shape[1:] != train.x.shape[1:]:
            raise TrainingDataError(
                f"training frames are {list(train.x.shape[1:])} but the teacher's validation "
                f"frames are {list(validation.x.shape[1:])}: the student is checked on those"
            )
        if request.init_from_version > 0:
            start = self.catalogue.info(request.target, request.init_from_version)
            pre = Preprocessing.from_dict(start.preprocessing)
            student_name = start.ref
        else:
            arch = architecture(request.student)
            pre = d.student_preprocessing(arch, train)
            student_name = arch.name
        copies = d.affordable_copies(train, pre, request.augment_copies)
        frames = d.augmented(train, copies, seed=request.seed)
        x = frames.inputs(pre)
        progress("data", 1.0, f"{len(train)} frames + augmented copies: {len(frames)}")

        clock.phase("teacher")
        soft = None
        if request.alpha > 0:

            def answered(done: int, total: int) -> None:
                clock.check()
                progress("teacher", done / total, f"{done}/{total} frames")

            soft = teacher_logits(
                files["onnx"], teacher_pre, frames.x, cache_dir=self.cache_dir,
                threads=self.threads, progress=answered,
            )  # fmt: skip
        teacher_val = teacher_logits(
            files["onnx"], teacher_pre, validation.x, cache_dir=self.cache_dir, threads=self.threads
        )
        progress("teacher", 1.0, "teacher logits ready")

        clock.phase("train")
        if request.init_from_version > 0:
            source = self.catalogue.materialise(start.source_sha256, tmp / "init.onnx")
            module = onnx_to_torch(source)
        else:
            module = arch.build(pre.channels, teacher.num_classes, seed=request.seed)
        config = self._fit_config(request, clock.remaining())
        module, fit_report = d.train_student(
            module, x, frames.y, config, soft,
            progress=lambda done, message: progress("train", done, message),
            cancel=clock.cancel,
        )  # fmt: skip
        del x

        clock.phase("export")
        onnx_path = export_onnx(module, (pre.channels, *pre.size), tmp / "student.onnx")
        student_val = d.onnx_logits(onnx_path, validation.inputs(pre))
        student_acc, teacher_acc = (
            d.accuracy(student_val, validation.y),
            d.accuracy(teacher_val, validation.y),
        )
        (latency,) = d.latency_ms([onnx_path], [validation.subset(np.arange(1)).inputs(pre)])
        progress("export", 1.0, f"accuracy {student_acc:.4f} (teacher {teacher_acc:.4f})")

        clock.phase("register")
        clock.check()  # the last point where cancelling leaves nothing behind
        info = self._register(request, teacher, train, pre, onnx_path, tmp)
        progress("register", 1.0, f"registered {info.ref}")
        clock.end()
        log.info(
            "distilled %s from %s (%s): accuracy %.4f, teacher %.4f",
            info.ref, teacher.ref, student_name, student_acc, teacher_acc,
        )  # fmt: skip
        return DistillReport(
            model=info,
            teacher=teacher.ref,
            student=student_name,
            alpha=request.alpha,
            temperature=request.temperature,
            train_frames=len(train),
            trained_frames=len(frames),
            validation_frames=len(validation),
            student_accuracy=student_acc,
            teacher_accuracy=teacher_acc,
            latency_ms=latency,
            parameters=sum(int(p.numel()) for p in module.parameters()),
            phase_seconds=dict(clock.seconds),
            fit=fit_report,
            input_size=pre.size,
        )

    def _frames(self, path: Path, label: str) -> Any:
        from controller.training.data import load_frames

        try:
            return load_frames(path, MAX_TRAIN_FRAMES)
        except TrainingDataError as exc:
            raise TrainingDataError(
                f"{label}: {str(exc).replace(path.name, 'the upload')}"
            ) from exc

    def _training_frames(self, request: DistillRequest, tmp: Path, num_classes: int) -> Any:
        from controller.training.data import Frames

        parts = []
        for i, digest in enumerate((request.data_sha256, *request.extra_data_sha256)):
            dest = tmp / f"train-{i}.npz"
            try:
                self.catalogue.materialise(digest, dest)
            except Exception as exc:  # ArtifactNotFound, or a digest of the wrong form
                raise NotFound(f"training data {digest[:16]} was not uploaded") from exc
            parts.append(self._frames(dest, "training data"))
            if sum(len(p) for p in parts) > MAX_TRAIN_FRAMES:
                raise TrainingDataError(f"more than {MAX_TRAIN_FRAMES} training frames in all")
        frames = Frames.concat(parts)
        frames.check_classes(num_classes)
        return frames

    def _register(
        self,
        request: DistillRequest,
        teacher: ModelInfo,
        train: Any,
        pre: Preprocessing,
        onnx_path: Path,
        tmp: Path,
    ) -> ModelInfo:
        rng = np.random.default_rng(request.seed)
        draw = np.sort(rng.permutation(len(train))[: min(CALIBRATION_FRAMES, len(train))])
        calibration = tmp / "calibration.npz"
        np.savez_compressed(calibration, x=train.x[draw], y=train.y[draw])
        store = self.catalogue.store
        onnx_sha = store.put_file(onnx_path).sha256
        calibration_sha = store.put_file(calibration).sha256
        pre_json = json.dumps(
            {
                "size": list(pre.size), "channels": pre.channels, "scale": pre.scale,
                "mean": list(pre.mean), "std": list(pre.std), "layout": pre.layout,
            }
        )  # fmt: skip
        return self.catalogue.add_model(
            request.target,
            onnx_sha,
            teacher.validation_sha256,
            calibration_sha,
            labels=teacher.labels,
            preprocess_json=pre_json,
        )
