"""What a desired-state message may say about its target, pure.

The message (retained MQTT or the ``GetDesiredState`` pull) is not signed: it only *names* a
TUF target (path, length, sha256, variant id). ``claimed_target`` extracts that name for the
verifier; ``disagreements`` lists every field the message carries that differs from the
signed target it named (a forged label, temperature, file name...), so the service refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.ota import machine as m
from edgefleet.errors import InvalidInput


def claimed_target(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The target a desired state names (path, length, sha256, variant id): only an
    identifier; what gets installed comes from the signed target it names."""
    raw = desired.get("target")
    target = dict(raw) if isinstance(raw, Mapping) else {}
    hashes = target.get("hashes")
    hashes = hashes if isinstance(hashes, Mapping) else {}
    path = target.get("path") or desired.get("target_path")
    if not isinstance(path, str) or not path:
        raise InvalidInput("desired state names no target path")
    return {
        "path": path,
        "length": target.get("length", desired.get("length")),
        "hashes": {"sha256": hashes.get("sha256") or desired.get("sha256")},
        "custom": {"variant_id": desired.get("variant_id")},
    }


def disagreements(desired: Mapping[str, Any], target: m.TargetInfo) -> list[str]:
    """Fields of the unsigned message that differ from the signed target it names."""
    signed: dict[str, Any] = {
        "target_path": target.path, "length": target.length, "sha256": target.sha256,
        **_prefixed(target.raw["custom"]),
    }  # fmt: skip
    top = {"target_path": "target_path", "length": "length", "sha256": "sha256",
           "variant_id": "custom.variant_id", "model": "custom.model",
           "version": "custom.version"}  # fmt: skip
    given = [(name, desired[k]) for k, name in top.items() if desired.get(k) not in (None, "", 0)]
    raw = desired.get("target")
    if isinstance(raw, Mapping):
        given += [(name, raw[k]) for k, name in (("path", "target_path"), ("length", "length"))
                  if k in raw]  # fmt: skip
        hashes = raw.get("hashes")
        if isinstance(hashes, Mapping) and "sha256" in hashes:
            given.append(("sha256", hashes["sha256"]))
        custom = raw.get("custom")
        if custom is not None:
            if not isinstance(custom, Mapping):
                return ["custom"]
            given += list(_prefixed(custom).items())
    return sorted({k for k, v in given if _canon(v) != _canon(signed.get(k, _ABSENT))})


def _prefixed(custom: Mapping[str, Any]) -> dict[str, Any]:
    return {f"custom.{k}": v for k, v in custom.items()}


_ABSENT = object()


def _canon(value: Any) -> str:
    if value is _ABSENT:
        return "<absent>"
    return json.dumps(value, sort_keys=True, default=list)
