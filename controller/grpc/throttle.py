"""Bounds on failed credentials (operator tokens, enrollment secrets): per caller address and
over all callers, in a moving window (the ``limits`` package's moving-window limiter).

    throttle = CredentialThrottle()
    throttle.check(address)    # ResourceExhausted while the address (or everyone) is over
    ...                        # check the credential
    throttle.failed(address)   # when it was wrong

While an address is over its bound its calls are refused *before* their credential is
looked at, so a guessing loop learns nothing more than its first ``per_address`` answers per
window; calls from other addresses are served as before. Past the total bound (many guessing
addresses together) only addresses that themselves failed in the window are refused, so a
device or operator that has not failed is never locked out. Right credentials never count. An IPv6
caller is counted by its /64, which one host usually holds whole.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from edgefleet.errors import ResourceExhausted

log = logging.getLogger(__name__)

ALL = "*"


@dataclass(frozen=True)
class FailureLimits:
    per_address: int = 10  # failed credentials per caller address per window
    total: int = 100  # over all callers per window
    window_s: int = 60


def caller_address(peer: str) -> str:
    """The address a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``) is counted by."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]") or rest
        try:
            ip = ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return host
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return peer


class CredentialThrottle:
    def __init__(self, limits: FailureLimits | None = None) -> None:
        self.limits = limits or FailureLimits()
        window = self.limits.window_s
        self._per_address = RateLimitItemPerSecond(self.limits.per_address, window)
        self._total = RateLimitItemPerSecond(self.limits.total, window)
        self._warn = RateLimitItemPerSecond(1, window)  # one log line per address per window
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.refused = 0

    def check(self, address: str) -> None:
        """ResourceExhausted when ``address`` is over its bound, or when every caller together
        is over the total and ``address`` itself failed in the window (a caller that has not
        failed is always served, so many guessing addresses cannot lock out the fleet)."""
        if not self._limiter.test(self._per_address, address):
            self._refuse(self._per_address, address, f"from {address}", address)
        failed_here = self._limiter.get_window_stats(self._per_address, address).remaining
        if failed_here < self.limits.per_address and not self._limiter.test(self._total, ALL):
            self._refuse(self._total, ALL, "from all callers", address)

    def _refuse(self, item: RateLimitItem, key: str, whose: str, address: str) -> None:
        self.refused += 1
        retry = self._retry_after(item, key)
        if self._limiter.hit(self._warn, address):
            log.warning("too many failed credentials %s: refusing for %.0f s", whose, retry)
        raise ResourceExhausted(f"too many failed credentials {whose}: retry in {retry:.0f} s")

    def failed(self, address: str) -> None:
        self._limiter.hit(self._per_address, address)
        self._limiter.hit(self._total, ALL)

    def _retry_after(self, item: RateLimitItem, key: str) -> float:
        reset = self._limiter.get_window_stats(item, key).reset_time
        return max(1.0, reset - time.time())
