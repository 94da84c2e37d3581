"""The hard-example store's values: a stored frame's index row, the frame's npz encoding, and
the rows as domain values (controller.services.hard_examples uses them)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import numpy as np

from controller.services.hard_example_policy import HardExamplePolicy
from controller.store.models_hard_examples import HardExamplePolicyRow, HardExampleRow


class BlobStore(Protocol):
    """What the store needs of the artifact store (controller.artifacts.ArtifactStore)."""

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> Any: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def delete(self, sha256: str) -> None: ...


@dataclass(frozen=True)
class HardFrame:
    """One stored frame's index row."""

    id: int
    model: str
    device_id: str
    stored_ms: int
    sha256: str
    size_bytes: int
    frame_id: str
    edge_variant_id: str
    cloud_label: int
    cloud_confidence: float
    edge_label: int
    edge_confidence: float


def frame_of(r: HardExampleRow) -> HardFrame:
    return HardFrame(
        r.id,
        r.model,
        r.device_id,
        r.stored_ms,
        r.sha256,
        r.size_bytes,
        r.frame_id,
        r.edge_variant_id,
        r.cloud_label,
        r.cloud_confidence,
        r.edge_label,
        r.edge_confidence,
    )


def policy_of(r: HardExamplePolicyRow) -> HardExamplePolicy:
    return HardExamplePolicy(
        r.model,
        r.enabled,
        r.max_bytes,
        r.retention_s,
        tuple(r.device_ids or ()),
        dict(r.device_labels or {}),
        r.created_ms,
        r.updated_ms,
    )


def encode_frame(frame: np.ndarray, cloud_label: int, cloud_confidence: float) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        frame=frame,
        cloud_label=np.int64(cloud_label),
        cloud_confidence=np.float32(cloud_confidence),
    )
    return buf.getvalue()


def decode_frame(data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return np.asarray(z["frame"])
