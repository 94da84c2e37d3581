"""Signing keys and TUF release metadata for model variants.

Public API (what the CLI and the gRPC services call):

    create_keys(keys_dir, roles=TOP_LEVEL_ROLES, root_threshold=1, root_key_count=None,
                root_passphrase=None) -> dict[role, list[Key]]
    KeyStore(keys_dir): generate(role, passphrase=None) -> CryptoSigner,
        keyids(role), signers(role, keyids=None, passphrase=None), remove(role, keyid)
    load_signer(path, passphrase=None) -> CryptoSigner     # e.g. an offline root key
    target_path(model, version, variant, file) -> "models/{model}/{version}/{variant}/{file}"
    ExpiryPolicy(root=365d, targets=4w, snapshot=2w, timestamp=1d)
    Repository(metadata_dir, keystore, expiry=None, clock=utcnow):
        init(root_signers, root_threshold=1, online_keys=None)
        add_target(path, artifact_ref, custom) / remove_target(path)   # staged
        publish() -> targets version   # targets -> snapshot -> timestamp
        refresh_timestamp() -> timestamp version   # run periodically (online key)
        rotate_key(role, root_signers, new_signers=None, revoke=None, threshold=None,
                   passphrase=None)
        resign_root(root_signers) -> root version
        metadata_file("root.json" | "N.root.json" | "timestamp.json" | "snapshot.json" |
                      "N.snapshot.json" | "targets.json" | "N.targets.json") -> bytes
        metadata_bytes(role, version=None) -> bytes
        root() -> Root, targets() -> dict[path, TargetFile]

Clients fetch ``metadata/<name>`` via ``metadata_file`` and ``targets/<dir>/<sha256>.<file>``
from the artifact store (consistent snapshots are on). Errors derive from ``SigningError``.
"""

from controller.signing.errors import (
    InvalidTarget,
    KeyLoadError,
    KeyNotFound,
    MetadataNotFound,
    SigningError,
    ThresholdNotMet,
)
from controller.signing.keys import TOP_LEVEL_ROLES, KeyStore, create_keys, load_signer
from controller.signing.repository import ExpiryPolicy, Repository, target_path

__all__ = [
    "TOP_LEVEL_ROLES",
    "ExpiryPolicy",
    "InvalidTarget",
    "KeyLoadError",
    "KeyNotFound",
    "KeyStore",
    "MetadataNotFound",
    "Repository",
    "SigningError",
    "ThresholdNotMet",
    "create_keys",
    "load_signer",
    "target_path",
]
