"""The one rule set both brokers enforce."""

from __future__ import annotations

import pytest

from controller.mqtt.acl import (
    CONTROLLER_USERNAME,
    filter_matches,
    filter_within,
    may_publish,
    may_receive,
    may_subscribe,
)

A = "edgefleet/v1/devices/dev-a"
B = "edgefleet/v1/devices/dev-b"


@pytest.mark.parametrize(
    ("user", "topic", "allowed"),
    [
        ("dev-a", f"{A}/status", True),
        ("dev-a", f"{A}/heartbeat", True),
        ("dev-a", f"{A}/telemetry", True),
        ("dev-a", f"{A}/desired", False),
        ("dev-a", f"{A}/status/extra", False),
        ("dev-a", f"{B}/status", False),
        ("dev-a", f"{A}/+", False),
        ("dev-a", "other/topic", False),
        (CONTROLLER_USERNAME, f"{A}/desired", True),
        (CONTROLLER_USERNAME, f"{A}/status", False),
        (None, f"{A}/status", False),
        ("bad id", "edgefleet/v1/devices/bad id/status", False),
    ],
)
def test_publish(user: str | None, topic: str, allowed: bool) -> None:
    assert may_publish(user, topic) is allowed


@pytest.mark.parametrize(
    ("user", "topic_filter", "allowed"),
    [
        ("dev-a", f"{A}/desired", True),
        ("dev-a", f"{B}/desired", False),
        ("dev-a", "edgefleet/v1/devices/+/desired", False),
        ("dev-a", f"{A}/#", False),
        ("dev-a", "#", False),
        (CONTROLLER_USERNAME, "edgefleet/v1/devices/+/status", True),
        (CONTROLLER_USERNAME, "edgefleet/v1/#", True),
        (CONTROLLER_USERNAME, "#", False),
        (CONTROLLER_USERNAME, "+/v1/devices/+/status", False),
        (CONTROLLER_USERNAME, "$SYS/#", False),
    ],
)
def test_subscribe(user: str | None, topic_filter: str, allowed: bool) -> None:
    assert may_subscribe(user, topic_filter) is allowed


def test_receive() -> None:
    assert may_receive("dev-a", f"{A}/desired")
    assert not may_receive("dev-a", f"{B}/desired")
    assert not may_receive("dev-a", f"{A}/status")
    assert may_receive(CONTROLLER_USERNAME, f"{B}/heartbeat")


def test_filter_helpers() -> None:
    assert filter_matches("a/+/c", "a/b/c")
    assert filter_matches("a/#", "a/b/c")
    assert filter_matches("a/#", "a")
    assert not filter_matches("a/+", "a/b/c")
    assert filter_within("a/+/c", "a/#")
    assert not filter_within("a/#", "a/+")
    assert filter_within("a/b", "a/+")
    assert not filter_within("+/b", "a/+")
