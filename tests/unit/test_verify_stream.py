"""verify_artifact_stream and the float-safe custom field encoding."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from edgefleet.errors import InvalidInput
from edgefleet.updates import (
    ArtifactMismatch,
    ArtifactTooLong,
    ArtifactTruncated,
    verify_artifact_stream,
)
from edgefleet.updates.custom import decode_custom, encode_custom

DATA = os.urandom(10_000)
SHA = hashlib.sha256(DATA).hexdigest()


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_good_stream_returns_digest_and_feeds_sink() -> None:
    received: list[bytes] = []
    assert verify_artifact_stream(chunks(DATA), len(DATA), SHA, received.append) == SHA
    assert b"".join(received) == DATA


def test_bad_streams() -> None:
    flipped = bytes([DATA[0] ^ 0xFF]) + DATA[1:]
    with pytest.raises(ArtifactMismatch):
        verify_artifact_stream(chunks(flipped), len(DATA), SHA)
    with pytest.raises(ArtifactTruncated):
        verify_artifact_stream(chunks(DATA[:-1]), len(DATA), SHA)
    with pytest.raises(ArtifactTooLong):
        verify_artifact_stream(chunks(DATA + b"x"), len(DATA), SHA)


def test_endless_stream_stops_one_chunk_past_the_limit() -> None:
    pulled = 0
    sunk = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"a" * 1000

    def sink(chunk: bytes) -> None:
        nonlocal sunk
        sunk += len(chunk)

    with pytest.raises(ArtifactTooLong):
        verify_artifact_stream(endless(), 10_000, SHA, sink)
    assert pulled == 11  # the 11th chunk crossed the signed length
    assert sunk == 10_000  # nothing past the limit reached the sink


def test_custom_floats_round_trip_exactly() -> None:
    custom = {
        "temperature": 1.2345678901234567,
        "pre": {"mean": [0.485, 0.456], "size": [224]},
        "ok": True,
        "name": "x",
    }
    encoded = encode_custom(custom)
    assert encoded["temperature"] == {"$float": "1.2345678901234567"}
    assert encoded["ok"] is True and encoded["pre"]["size"] == [224]
    assert decode_custom(encoded) == custom
    with pytest.raises(InvalidInput):
        encode_custom({"bad": float("nan")})
    with pytest.raises(InvalidInput):
        encode_custom({"bad": object()})
