"""Hash-while-streaming artifact verification (no whole file in memory, no endless data)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from edgefleet.updates.errors import ArtifactMismatch, ArtifactTooLong, ArtifactTruncated


def verify_artifact_stream(
    chunks: Iterable[bytes],
    expected_length: int,
    expected_sha256: str,
    sink: Callable[[bytes], object] | None = None,
) -> str:
    """Consume ``chunks``, passing each to ``sink``, and return the sha256 hex digest.

    Stops pulling chunks as soon as more than ``expected_length`` bytes arrive (nothing past
    the limit reaches ``sink``), and raises ``ArtifactTooLong``, ``ArtifactTruncated`` or
    ``ArtifactMismatch`` unless exactly ``expected_length`` bytes hashing to
    ``expected_sha256`` arrived. Callers must discard what ``sink`` got when this raises.
    """
    digest = hashlib.sha256()
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > expected_length:
            raise ArtifactTooLong(f"artifact exceeds its signed length of {expected_length} bytes")
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    if received < expected_length:
        raise ArtifactTruncated(
            f"artifact ended after {received} of {expected_length} signed bytes"
        )
    actual = digest.hexdigest()
    if actual != expected_sha256.lower():
        raise ArtifactMismatch(f"artifact sha256 {actual} does not match signed {expected_sha256}")
    return actual
