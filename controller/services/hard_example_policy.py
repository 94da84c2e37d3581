"""Hard-example policy values: which offloaded frames of an edge model the controller keeps
for retraining (opt-in per model: nothing is kept for a model without an enabled policy), how
many bytes at most, for how long, and from which devices. Pure values; the store that applies
them is controller.services.hard_examples."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefleet.errors import InvalidInput

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_RETENTION_S = 7 * 86400
MAX_POLICY_BYTES = 1 << 40  # 1 TiB: a cap past this is a typo
MAX_RETENTION_S = 3650 * 86400
MAX_POLICY_DEVICES = 1000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_SCALE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_retention(text: str) -> int:
    """``30m`` / ``12h`` / ``7d`` / ``2w`` as seconds; ``0`` or ``forever``: no retention limit
    (the size cap still drops the oldest frames)."""
    text = text.strip().lower()
    if text in ("0", "forever", "none"):
        return 0
    m = _DURATION.match(text)
    if not m:
        raise InvalidInput(f"bad retention {text!r} (e.g. 12h, 7d, 2w, or 0 for no limit)")
    seconds = int(float(m.group(1)) * _SCALE[m.group(2)])
    if not 0 < seconds <= MAX_RETENTION_S:
        raise InvalidInput(f"retention must be 1 s .. 3650 d, not {text!r}")
    return seconds


def retention_text(seconds: int) -> str:
    if seconds <= 0:
        return "no limit"
    for unit in ("w", "d", "h", "m"):
        if seconds % _SCALE[unit] == 0:
            return f"{seconds // _SCALE[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class HardExamplePolicy:
    """``device_ids`` and ``device_labels`` both empty: every device of the model; otherwise
    a device listed by id, or one whose labels include every ``device_labels`` pair."""

    model: str
    enabled: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    retention_s: int = DEFAULT_RETENTION_S
    device_ids: tuple[str, ...] = ()
    device_labels: Mapping[str, str] = field(default_factory=dict)
    created_ms: int = 0  # 0: never set (the default, disabled policy)
    updated_ms: int = 0

    def covers(self, device_id: str, labels: Mapping[str, str] | None) -> bool:
        """Whether a frame of this device may be kept (labels None: the device is unknown)."""
        if not self.enabled:
            return False
        if not self.device_ids and not self.device_labels:
            return labels is not None
        if device_id in self.device_ids:
            return True
        return (
            bool(self.device_labels)
            and labels is not None
            and all(labels.get(k) == v for k, v in self.device_labels.items())
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "enabled": self.enabled,
            "max_bytes": self.max_bytes,
            "retention_s": self.retention_s,
            "retention": retention_text(self.retention_s),
            "device_ids": list(self.device_ids),
            "device_labels": dict(self.device_labels),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


@dataclass(frozen=True)
class PolicyChange:
    """What an operator asked to change; None leaves a field as it is."""

    enabled: bool | None = None
    max_bytes: int | None = None
    retention_s: int | None = None
    device_ids: tuple[str, ...] | None = None  # ids (names resolved before)
    device_labels: Mapping[str, str] | None = None
    purge: bool = False  # delete every stored frame of the model too

    def check(self) -> None:
        if self.max_bytes is not None and not 0 < self.max_bytes <= MAX_POLICY_BYTES:
            raise InvalidInput(f"the size cap must be 1 byte .. 1 TiB, not {self.max_bytes}")
        if self.retention_s is not None and not 0 <= self.retention_s <= MAX_RETENTION_S:
            raise InvalidInput(
                f"retention must be 0 (no limit) .. 3650 d, not {self.retention_s} s"
            )
        if self.device_ids is not None and len(self.device_ids) > MAX_POLICY_DEVICES:
            raise InvalidInput(f"at most {MAX_POLICY_DEVICES} devices per policy")

    def applied_to(self, policy: HardExamplePolicy, now_ms: int) -> HardExamplePolicy:
        def pick(new: Any, old: Any) -> Any:
            return old if new is None else new

        return HardExamplePolicy(
            model=policy.model,
            enabled=pick(self.enabled, policy.enabled),
            max_bytes=pick(self.max_bytes, policy.max_bytes),
            retention_s=pick(self.retention_s, policy.retention_s),
            device_ids=tuple(pick(self.device_ids, policy.device_ids)),
            device_labels=dict(pick(self.device_labels, policy.device_labels)),
            created_ms=policy.created_ms or now_ms,
            updated_ms=now_ms,
        )


@dataclass(frozen=True)
class StoredCounts:
    """What is stored for a model now, and what this controller dropped since it started."""

    frames: int = 0
    bytes: int = 0
    oldest_ms: int = 0
    newest_ms: int = 0
    dropped_cap: int = 0  # oldest frames deleted to stay within the cap (or the ceiling)
    dropped_retention: int = 0  # frames older than the retention, deleted
    dropped_busy: int = 0  # frames not kept: the writer's queue was full

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))
