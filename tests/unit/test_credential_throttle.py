"""How a gRPC peer is counted by the credential throttle, and its window (pure, no server)."""

from __future__ import annotations

import pytest

from controller.grpc.throttle import CredentialThrottle, FailureLimits, caller_address
from edgefleet.errors import ResourceExhausted


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:50312", "127.0.0.1"),
        ("ipv6:[::1]:50312", "::/64"),
        ("ipv6:[2001:db8:1:2:aaaa::5]:443", "2001:db8:1:2::/64"),
        ("ipv6:[::ffff:10.0.0.7]:9", "10.0.0.7"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_caller_address(peer: str, address: str) -> None:
    assert caller_address(peer) == address


def test_an_address_over_its_bound_is_refused_others_are_not() -> None:
    throttle = CredentialThrottle(FailureLimits(per_address=3, total=5, window_s=60))
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.failed("10.0.0.1")
    with pytest.raises(ResourceExhausted, match=r"from 10\.0\.0\.1: retry in \d+ s"):
        throttle.check("10.0.0.1")
    throttle.check("10.0.0.2")  # another address: served
    throttle.failed("10.0.0.2")
    throttle.failed("10.0.0.3")
    with pytest.raises(ResourceExhausted, match="from all callers"):
        throttle.check("10.0.0.3")  # the total bound: 5 failures in the window
    throttle.check("10.0.0.4")  # an address that has not failed is still served
    assert throttle.refused == 2
