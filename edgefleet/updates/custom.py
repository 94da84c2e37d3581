"""Target custom fields through canonical JSON, which has no floats.

TUF signs the OLPC canonical JSON form of metadata, and that form forbids floats. The
controller encodes each float as ``{"$float": repr(x)}`` (``repr`` round-trips exactly); the
device decodes them back, so custom fields like ``temperature`` or ``preprocessing.mean``
arrive as the floats they were.
"""

from __future__ import annotations

import math
from typing import Any

from edgefleet.errors import InvalidInput

FLOAT_TAG = "$float"


def encode_custom(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"custom field value {value!r} is not finite")
        return {FLOAT_TAG: repr(value)}
    if isinstance(value, dict):
        if FLOAT_TAG in value:
            raise InvalidInput(f"custom field key {FLOAT_TAG!r} is reserved")
        return {str(k): encode_custom(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_custom(v) for v in value]
    raise InvalidInput(f"custom field value of type {type(value).__name__} is not JSON")


def decode_custom(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {FLOAT_TAG} and isinstance(value[FLOAT_TAG], str):
            try:
                return float(value[FLOAT_TAG])
            except ValueError as exc:
                raise InvalidInput(f"bad encoded float {value[FLOAT_TAG]!r}") from exc
        return {k: decode_custom(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_custom(v) for v in value]
    return value


# Custom fields of a signed target that describe the release, not the variant installed.
RELEASE_FIELDS = frozenset({"profile", "selected"})


def variant_fields(custom: dict[str, Any]) -> dict[str, Any]:
    """The variant metadata in a target's (decoded) custom fields: all but the release's."""
    return {k: v for k, v in custom.items() if k not in RELEASE_FIELDS}
