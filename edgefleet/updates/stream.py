"""Hash-while-streaming artifact verification (no whole file in memory, no endless data).

``StreamDigest`` is the one verify-while-streaming path: the device's updater feeds it each
chunk as it writes it to disk (seeding it with the bytes already on disk when it resumes),
and ``verify_artifact_stream`` wraps it for a plain iterator of chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from edgefleet.updates.errors import ArtifactMismatch, ArtifactTooLong, ArtifactTruncated


class StreamDigest:
    """Length and sha256 of an artifact as it streams, checked against signed values."""

    def __init__(self, expected_length: int, expected_sha256: str) -> None:
        self.expected_length, self.expected_sha256 = expected_length, expected_sha256.lower()
        self.received = 0
        self._digest = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        """Count and hash ``chunk``; ``ArtifactTooLong`` (nothing hashed) past the length."""
        if self.received + len(chunk) > self.expected_length:
            raise ArtifactTooLong(
                f"artifact exceeds its signed length of {self.expected_length} bytes"
            )
        self.received += len(chunk)
        self._digest.update(chunk)

    def finish(self) -> str:
        """The sha256 hex digest, once exactly the signed bytes arrived; else raises."""
        if self.received < self.expected_length:
            raise ArtifactTruncated(
                f"artifact ended after {self.received} of {self.expected_length} signed bytes"
            )
        actual = self._digest.hexdigest()
        if actual != self.expected_sha256:
            raise ArtifactMismatch(
                f"artifact sha256 {actual} does not match signed {self.expected_sha256}"
            )
        return actual


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
    digest = StreamDigest(expected_length, expected_sha256)
    for chunk in chunks:
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    return digest.finish()
