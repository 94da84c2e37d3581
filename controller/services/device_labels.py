"""Checks of what operators name and label devices with (shown on their screens)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from edgefleet.errors import InvalidInput

MAX_LABELS = 64


def check_shown_text(what: str, text: str) -> None:
    """InvalidInput when ``text`` holds a character a terminal would not show as itself:
    control (NUL, ESC ...), format (bidi overrides, zero-width joiners ...), private-use,
    unassigned or a line/paragraph separator. Names and labels end up on operators' screens."""
    for i, c in enumerate(text):
        if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp"):
            name = unicodedata.name(c, "a control character")
            raise InvalidInput(
                f"{what} must not contain U+{ord(c):04X} ({name}, at position {i + 1}):"
                " use printable characters"
            )


def check_labels(labels: Mapping[str, str], *, characters: bool = True) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} labels per device")
    for key, value in labels.items():
        if not key or len(key) > 63 or not all(c.isalnum() or c in "-_./" for c in key):
            raise InvalidInput(f"invalid label key {key!r}: use letters, digits and -_./")
        if len(value) > 253 or "," in value or "=" in value:
            raise InvalidInput(f"invalid label value {value!r} for {key!r}")
        if characters:
            check_shown_text(f"label {key}", value)
    return dict(labels)


__all__ = ["MAX_LABELS", "check_labels", "check_shown_text"]
