"""MQTT topic layout. Every device owns exactly one prefix and may publish only below it.

edgefleet/v1/devices/{device_id}/status      retained DeviceStatus; the last will sets online=false
edgefleet/v1/devices/{device_id}/heartbeat   Heartbeat, QoS 1
edgefleet/v1/devices/{device_id}/telemetry   TelemetryReport, QoS 1
edgefleet/v1/devices/{device_id}/desired     retained desired state, written by the controller only
"""

from __future__ import annotations

import re

from edgefleet.errors import InvalidInput

ROOT = "edgefleet/v1/devices"
STATUS = "status"
HEARTBEAT = "heartbeat"
TELEMETRY = "telemetry"
DESIRED = "desired"
DEVICE_PUBLISHED = (STATUS, HEARTBEAT, TELEMETRY)

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_device_id(device_id: str) -> str:
    if not _DEVICE_ID.match(device_id):
        raise InvalidInput(f"invalid device id {device_id!r}")
    return device_id


def device_prefix(device_id: str) -> str:
    return f"{ROOT}/{check_device_id(device_id)}"


def device_topic(device_id: str, kind: str) -> str:
    return f"{device_prefix(device_id)}/{kind}"


def subscription(kind: str) -> str:
    """The controller's wildcard subscription for one kind of message."""
    return f"{ROOT}/+/{kind}"


def parse_device_topic(topic: str) -> tuple[str, str]:
    """Split ``edgefleet/v1/devices/{id}/{kind}`` into (device_id, kind)."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != ROOT:
        raise InvalidInput(f"not an edgefleet device topic: {topic!r}")
    return check_device_id(parts[3]), parts[4]
