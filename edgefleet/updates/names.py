"""What a signed target may name as its model file, checked on both sides.

The device writes the model file into a slot next to the slot store's own files; a target
naming one of those (``manifest.json``...), a temporary name, a path, ``..`` or a NUL would
overwrite the store's bookkeeping. The controller refuses such a name when it signs, the
device when it installs.
"""

from __future__ import annotations

import re

from edgefleet.errors import InvalidInput

MANIFEST_FILE = "manifest.json"
TARGET_FILE = "target.json"
VARIANT_FILE = "variant.json"
SLOT_FILES = frozenset({MANIFEST_FILE, TARGET_FILE, VARIANT_FILE})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_model_file_name(name: object) -> str:
    """``name`` when a slot can hold it as the model file; InvalidInput saying why not."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise InvalidInput(
            f"unsafe model file name {name!r}: letters, digits, '.', '_' and '-' only, "
            "no path, no '..'"
        )
    if name.lower() in SLOT_FILES or name.lower().endswith(".tmp"):
        raise InvalidInput(f"model file name {name!r} is reserved for the device's slot store")
    return name
