"""Retries, one way on both sides: a backoff schedule, and tenacity to run call retries.

``Backoff`` is the schedule: ``first_s``, twice that, four times ... capped at ``max_s``,
each delay scaled by a random factor in ``[1 - jitter, 1 + jitter]`` when it is jittered.

- ``Backoff.delay(attempt)`` is pure, for code that must not sleep: the OTA state machine
  turns it into a "retry at" time inside its pure transition.
- A ``Backoff`` is also a tenacity wait strategy (it is called with tenacity's retry state),
  and ``retrying(...)`` builds the ``tenacity.Retrying`` every network retry uses: bounded
  attempts (or none, for an operator's ``fleet watch``), a predicate saying which errors are
  transient (anything else is raised at once), a warning before each sleep, and an
  injectable sleep for tests. Giving up raises ``tenacity.RetryError``; callers turn it into
  their own error with ``last_error``. Timeouts stay on each call, set by the caller.

Why tenacity and not gRPC's service-config retry policy: retries must show in the logs, the
per-call deadline must stay per call (a gRPC retry policy shares one deadline across all
attempts), the CA fetch before enrollment is not gRPC at all, and a server stream that broke
after sending data must resume at its offset, which the gRPC policy does not do.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity

log = logging.getLogger(__name__)

_MAX_DOUBLINGS = 64  # 2**64 * any sensible first delay is far past any cap: no float overflow


@dataclass(frozen=True)
class Backoff:
    first_s: float
    max_s: float
    jitter: float = 0.0  # 0.2: each delay times a random factor in [0.8, 1.2]

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.max_s < 0:
            raise ValueError(f"backoff delays cannot be negative: {self}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), not {self.jitter}")

    def delay(self, attempt: int, spread: float = 1.0) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 = the first), times
        ``spread`` (pass a factor in ``[1 - jitter, 1 + jitter]`` to jitter it). Pure."""
        doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        return float(min(self.max_s, self.first_s * 2**doublings) * spread)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        """tenacity's wait strategy: the schedule at tenacity's attempt number, jittered."""
        spread = random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return self.delay(retry_state.attempt_number, spread)


RetryHook = Callable[[BaseException, float, int], None]  # (error, delay s, failed attempts)


def retrying(
    *,
    what: str,
    transient: Callable[[BaseException], bool],
    attempts: int | None,
    backoff: Backoff,
    describe: Callable[[BaseException], str] = str,
    on_retry: RetryHook | None = None,
    logger: logging.Logger = log,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying``: up to ``attempts`` tries (``None``: until it works) of errors
    ``transient`` accepts, waiting ``backoff`` between them. Before each wait it logs a
    warning ("<what>: <describe(error)>, retrying in 1.0 s (attempt 1/5)") or, when given,
    calls ``on_retry`` instead."""
    if attempts is not None and attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = last_error_of(state)
        delay = state.upcoming_sleep
        if on_retry is not None:
            on_retry(error, delay, state.attempt_number)
            return
        of = f"/{attempts}" if attempts is not None else ""
        logger.warning(
            "%s: %s, retrying in %.1f s (attempt %d%s)",
            what,
            describe(error),
            delay,
            state.attempt_number,
            of,
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts) if attempts is not None else tenacity.stop_never,
        wait=backoff,
        retry=tenacity.retry_if_exception(transient),
        before_sleep=before_sleep,
        sleep=sleep,
    )


def last_error_of(state: tenacity.RetryCallState) -> BaseException:
    error = state.outcome.exception() if state.outcome is not None else None
    if error is None:
        raise AssertionError("a retry without an error")
    return error


def last_error(gave_up: tenacity.RetryError) -> BaseException:
    """The error of the last attempt, once ``retrying`` gave up."""
    error = gave_up.last_attempt.exception()
    if error is None:
        raise AssertionError("gave up without an error")
    return error
