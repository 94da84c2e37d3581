"""Offload policies (which frames go to the cloud) and the audit sampler."""

from __future__ import annotations

import json
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edgefleet.drift import PSI_MAJOR, counts_of, psi

log = logging.getLogger(__name__)


class OffloadPolicy(Protocol):
    def should_offload(self, confidence: float) -> bool: ...

    def record_offload_bytes(self, n: int) -> None: ...

    @property
    def threshold(self) -> float: ...


class FixedThreshold:
    """Offload every frame whose confidence is below `t`."""

    def __init__(self, t: float) -> None:
        self._t = float(t)

    @property
    def threshold(self) -> float:
        return self._t

    def should_offload(self, confidence: float) -> bool:
        return confidence < self._t

    def record_offload_bytes(self, n: int) -> None:
        del n


class BudgetPolicy:
    """Adapts its threshold online to offload a budgeted share of frames.

    The budget is one of: a fraction of frames, offloaded frames per second, or offloaded
    bytes per second (both rates are turned into a fraction with the measured frame rate and
    mean request size). The threshold is the target quantile of a sliding window of recent
    confidences, nudged by an integral term on the realized offload fraction so that ties
    and drifting streams still land on budget.

    Drift: the controller may grant frames/s above the budget (``set_boost_fps``, from the
    desired state's ``offload_max_fps``), and the policy checks its own window against the
    variant's validation confidence histogram (``set_baseline``): while their PSI is at or
    above ``PSI_MAJOR`` the target is at least ``shift_target``. The target is the largest.
    """

    SHIFT_CHECK_EVERY = 100  # decisions between PSI checks
    SHIFT_MIN_FRAMES = 200  # window frames a PSI check needs

    def __init__(
        self,
        target_fraction: float | None = None,
        frames_per_s: float | None = None,
        bytes_per_s: float | None = None,
        window: int = 500,
        warmup: int = 20,
        initial_threshold: float = 0.5,
        gain: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
        shift_target: float = 0.0,
    ) -> None:
        given = [v for v in (target_fraction, frames_per_s, bytes_per_s) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of target_fraction, frames_per_s, bytes_per_s")
        if target_fraction is not None and not 0.0 <= target_fraction <= 1.0:
            raise ValueError("target_fraction must be in [0, 1]")
        self.target_fraction = target_fraction
        self.frames_per_s = frames_per_s
        self.bytes_per_s = bytes_per_s
        self._window: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)
        self._warmup = warmup
        self._threshold = initial_threshold
        self._gain = gain
        self._bias = 0.0
        self._clock = clock
        self._mean_bytes: float | None = None
        self.decisions = 0
        self.offloads = 0
        if not 0.0 <= shift_target <= 1.0:
            raise ValueError("shift_target must be in [0, 1]")
        self.shift_target = shift_target
        self.boost_fps = 0.0
        self.shift_psi: float | None = None
        self._baseline: list[int] | None = None
        self._bounds: tuple[float, ...] = ()

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def baseline(self) -> list[int] | None:
        """The validation confidence histogram the shift check compares with."""
        return None if self._baseline is None else list(self._baseline)

    @property
    def shifted(self) -> bool:
        return self.shift_psi is not None and self.shift_psi >= PSI_MAJOR

    def set_boost_fps(self, fps: float) -> None:
        """Frames/s the controller lets this device offload while it drifts (0: none)."""
        self.boost_fps = max(0.0, float(fps)) if fps == fps else 0.0

    def set_baseline(self, counts: Sequence[int], bounds: Sequence[float]) -> None:
        """The variant's validation confidence histogram (len(bounds) + 1 counts)."""
        if len(counts) != len(bounds) + 1 or sum(counts) <= 0:
            raise ValueError("baseline needs len(bounds) + 1 counts, not all zero")
        self._baseline, self._bounds = [int(c) for c in counts], tuple(float(b) for b in bounds)
        self.shift_psi = None

    def _check_shift(self) -> None:
        if self._baseline is None or len(self._window) < self.SHIFT_MIN_FRAMES:
            return
        self.shift_psi = psi(self._baseline, counts_of(self._window, self._bounds))

    def current_target(self) -> float:
        """The budget as a fraction of frames, given the measured frame rate."""
        own = self.shift_target if self.shifted else 0.0
        if len(self._times) < 2:
            return max(own, self.target_fraction or 0.0)
        span = self._times[-1] - self._times[0]
        fps = (len(self._times) - 1) / span if span > 0 else float("inf")
        boost = min(1.0, self.boost_fps / fps) if fps > 0 else 0.0
        if self.target_fraction is not None:
            return max(self.target_fraction, own, boost)
        if self.frames_per_s is not None:
            allowed = self.frames_per_s
        else:
            allowed = (self.bytes_per_s or 0.0) / (self._mean_bytes or 1.0)
        base = float(min(1.0, allowed / fps)) if fps > 0 else 1.0
        return max(base, own, boost)

    def should_offload(self, confidence: float) -> bool:
        self._times.append(self._clock())
        self._window.append(confidence)
        if self.decisions % self.SHIFT_CHECK_EVERY == 0:
            self._check_shift()
        target = self.current_target()
        if len(self._window) >= self._warmup:
            level = min(1.0, max(0.0, target + self._bias))
            self._threshold = float(np.quantile(np.fromiter(self._window, float), level))
        offload = confidence < self._threshold or (target >= 1.0)
        self.decisions += 1
        self.offloads += offload
        # integral correction toward the target realized fraction
        self._bias += self._gain * (target - float(offload))
        self._bias = min(0.5, max(-0.5, self._bias))
        return offload

    def prime(self, typical_confidences: Sequence[float]) -> None:
        """Start from confidences seen before (e.g. the variant's validation quantiles), so
        the first frames are already judged against an on-budget threshold."""
        values = [float(v) for v in typical_confidences]
        if not values:
            return
        # The prior stands in for the warm-up: it weighs like that many frames and fades as
        # real frames fill the window.
        for value in values:
            self._window.append(value)
        target = self.current_target()
        self._threshold = float(np.quantile(np.array(self._window, dtype=float), target))

    def record_offload_bytes(self, n: int) -> None:
        """Feed the size of each sent request (for the bytes_per_s budget)."""
        self._mean_bytes = n if self._mean_bytes is None else 0.9 * self._mean_bytes + 0.1 * n


class AuditSampler:
    """Picks a random share (default 2%) of confident frames to check against the cloud.

    Seeded from the operating system unless a seed is given (tests): every device audits
    different frame positions. ``min_fraction`` is the device's own rate; the controller may
    ask for more (``set_fraction``, from the desired state) to narrow its accuracy interval,
    never less."""

    def __init__(self, fraction: float = 0.02, seed: int | None = None) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("audit fraction must be in [0, 1]")
        self.min_fraction = fraction
        self.fraction = fraction
        self._rng = random.Random(secrets.randbits(64) if seed is None else seed)

    def set_fraction(self, fraction: float) -> None:
        """The controller's wanted fraction (clamped to [own rate, 1]; NaN is ignored)."""
        if math.isfinite(fraction):
            self.fraction = min(1.0, max(self.min_fraction, fraction))

    def should_audit(self) -> bool:
        return self.fraction > 0 and self._rng.random() < self.fraction


def audit_rate_follows(sampler: AuditSampler) -> Callable[[bytes], None]:
    """A desired-state listener: the controller's ``audit_fraction`` (0 or absent: the
    device's own rate)."""

    def follow(payload: bytes) -> None:
        try:
            wanted = float(json.loads(payload).get("audit_fraction") or 0.0)
        except (ValueError, TypeError, AttributeError):
            return  # the OTA service reports a malformed desired state
        before = sampler.fraction
        sampler.set_fraction(wanted)
        if sampler.fraction != before:
            log.info("audit fraction %.3f (controller asked %.3f)", sampler.fraction, wanted)

    return follow


DEFAULT_BUDGET = 0.2  # share of frames offloaded when neither threshold nor budget is given


def make_policy(
    threshold: float | None, budget: float | None, shift_target: float = 0.0
) -> OffloadPolicy:
    """A fixed threshold, or a budget (prime it with the model's validation confidences)."""
    if threshold is not None and budget is not None:
        raise ValueError("give an offload threshold or an offload budget, not both")
    if threshold is not None:
        return FixedThreshold(threshold)
    target = DEFAULT_BUDGET if budget is None else budget
    return BudgetPolicy(target_fraction=target, shift_target=shift_target)
