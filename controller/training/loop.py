"""The one training loop every stage uses: cross-entropy on the labels, plus knowledge
distillation from a teacher's logits when given (Hinton et al.: ``alpha * T^2 * KL(teacher_T ||
student_T) + (1 - alpha) * CE``), AdamW with a one-cycle schedule, seeded, bounded in wall
time, cancellable between steps, reporting progress.

    report = fit(module, x, y, FitConfig(epochs=3, alpha=0.7), teacher_logits=t, progress=cb)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from controller.training.errors import TrainingCancelled, TrainingDataError, TrainingTimedOut
from controller.training.torch_model import require

if TYPE_CHECKING:
    import torch

MAX_BATCH = 1024  # a bound on activation memory per step

# (epoch, step, steps per epoch, running loss) after every step
StepProgress = Callable[[int, int, int, float], None]


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 4.0  # softens both distributions in the distillation term
    alpha: float = 0.7  # weight of the distillation term (0 = labels only)
    label_smoothing: float = 0.0
    hflip: bool = False  # mirror half the frames of each batch (NCHW inputs)
    max_seconds: float = 3600.0
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= 1000:
            raise TrainingDataError(f"epochs must be 1..1000, not {self.epochs}")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise TrainingDataError(f"batch size must be 1..{MAX_BATCH}, not {self.batch_size}")
        if not 0.0 <= self.alpha <= 1.0:
            raise TrainingDataError(f"alpha must be within 0..1, not {self.alpha}")
        if not 0.5 <= self.temperature <= 50.0:
            raise TrainingDataError(f"temperature must be within 0.5..50, not {self.temperature}")
        if self.learning_rate <= 0 or self.max_seconds <= 0:
            raise TrainingDataError("learning rate and time bound must be positive")


@dataclass(frozen=True)
class FitReport:
    epochs: int
    steps: int
    seconds: float
    final_loss: float
    train_accuracy: float  # on the frames of the last epoch, as they were trained

    def to_dict(self) -> dict[str, float | int]:
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "final_loss": round(self.final_loss, 5),
            "train_accuracy": round(self.train_accuracy, 5),
        }


def fit(
    module: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: FitConfig,
    *,
    teacher_logits: np.ndarray | None = None,
    progress: StepProgress | None = None,
    cancel: threading.Event | None = None,
) -> FitReport:
    """Train ``module`` in place on float32 inputs ``x`` and int labels ``y``."""
    torch = require("torch")
    functional = torch.nn.functional
    if len(x) != len(y) or len(x) == 0:
        raise TrainingDataError(f"{len(x)} inputs for {len(y)} labels")
    if teacher_logits is not None and len(teacher_logits) != len(x):
        raise TrainingDataError(f"{len(teacher_logits)} teacher answers for {len(x)} inputs")
    if config.threads:
        torch.set_num_threads(config.threads)
    generator = torch.Generator().manual_seed(config.seed)
    inputs, labels = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    soft = None if teacher_logits is None else torch.from_numpy(teacher_logits.astype(np.float32))
    batch = min(config.batch_size, len(x))
    steps_per_epoch = max(1, len(x) // batch)
    optimizer = torch.optim.AdamW(
        [p for p in module.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    t, alpha = config.temperature, config.alpha if soft is not None else 0.0
    began, step, loss_value, right, seen = time.monotonic(), 0, float("nan"), 0, 0
    module.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        right = seen = 0
        for i in range(steps_per_epoch):
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled("training cancelled")
            if time.monotonic() - began > config.max_seconds:
                raise TrainingTimedOut(
                    f"training passed its bound of {config.max_seconds:.0f} s "
                    f"(epoch {epoch + 1}/{config.epochs}, step {i + 1}/{steps_per_epoch})"
                )
            index = order[i * batch : (i + 1) * batch]
            xb, yb = inputs[index], labels[index]
            if config.hflip:
                flip = torch.rand(len(xb), generator=generator) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            logits = module(xb)
            loss = functional.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
            if alpha > 0 and soft is not None:
                teacher = soft[index]  # answers on the unmirrored frame: same class
                kd = functional.kl_div(
                    functional.log_softmax(logits / t, dim=1),
                    functional.log_softmax(teacher / t, dim=1),
                    log_target=True,
                    reduction="batchmean",
                )
                loss = alpha * t * t * kd + (1 - alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            loss_value = float(loss.detach())
            right += int((logits.detach().argmax(1) == yb).sum())
            seen += len(yb)
            if progress is not None:
                progress(epoch + 1, i + 1, steps_per_epoch, loss_value)
    module.eval()
    return FitReport(
        epochs=config.epochs,
        steps=step,
        seconds=time.monotonic() - began,
        final_loss=loss_value,
        train_accuracy=right / max(seen, 1),
    )


def predict_logits(module: torch.nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """The module's logits on float32 inputs, in eval mode, without gradients."""
    torch = require("torch")
    module.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
