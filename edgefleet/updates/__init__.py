"""Verification of signed model updates, shared by the agent (and usable anywhere).

Public API:

    TrustedUpdater(metadata_dir, transport, bootstrap_root=None, config=None)
        refresh()                                    # root chain, timestamp, snapshot, targets
        get_target(path, profile, model=None, variant=None, variant_id=None) -> VerifiedTarget
        download_target(target, dest) -> Path       # streamed, verified, atomic
        verify_stream(target, chunks, sink) -> sha256
    verify_artifact_stream(chunks, expected_length, expected_sha256, sink=None) -> sha256
    StreamDigest(expected_length, expected_sha256): update(chunk), finish() -> sha256
    Transport = Callable[[str], bytes | Iterable[bytes]]   # "metadata/x.json", "targets/..."

Errors derive from ``edgefleet.errors.VerificationError`` (see ``edgefleet.updates.errors``),
except transport failures (``UpdateUnavailable``) and local disk ones (``UpdateStorageError``).
No controller code and no boto3 here: the agent imports this package.
"""

from edgefleet.updates.client import (
    Transport,
    TransportFetcher,
    TrustedUpdater,
    UpdateStorageError,
    VerifiedTarget,
)
from edgefleet.updates.errors import (
    ArtifactMismatch,
    ArtifactTooLong,
    ArtifactTruncated,
    BadSignature,
    MetadataError,
    MetadataExpired,
    MixAndMatch,
    RollbackDetected,
    TargetNotFound,
    UpdateUnavailable,
)
from edgefleet.updates.stream import StreamDigest, verify_artifact_stream

__all__ = [
    "ArtifactMismatch",
    "ArtifactTooLong",
    "ArtifactTruncated",
    "BadSignature",
    "MetadataError",
    "MetadataExpired",
    "MixAndMatch",
    "RollbackDetected",
    "StreamDigest",
    "TargetNotFound",
    "Transport",
    "TransportFetcher",
    "TrustedUpdater",
    "UpdateStorageError",
    "UpdateUnavailable",
    "VerifiedTarget",
    "verify_artifact_stream",
]
