"""TUF release metadata for model variants, built with python-tuf's metadata API.

A ``Repository`` owns a directory of signed metadata:

    root.json, 1.root.json, 2.root.json ...   every root version (clients walk the chain)
    N.targets.json, targets.json              versioned (consistent snapshots) + latest copy
    N.snapshot.json, snapshot.json
    timestamp.json                            short-lived, re-signed by the online key

Online keys (targets, snapshot, timestamp) come from the ``KeyStore``. Root keys can stay
offline: every method that changes root takes ``root_signers`` explicitly (load them with
``load_signer(path, passphrase)`` or ``KeyStore.signers("root", passphrase=...)``); nothing
else ever loads a root key.

Targets are content-addressed: ``consistent_snapshot`` is on, so clients fetch
``targets/{dir}/{sha256}.{file}`` and the controller serves it straight from the artifact
store. Each target carries ``custom`` fields (model, version, variant, variant_id, profile,
runtime, preprocessing, labels, temperature, ...) that clients check against themselves;
floats in them are tagged (``edgefleet.updates.custom``) since canonical JSON has none.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from controller.signing.errors import (
    InvalidTarget,
    MetadataNotFound,
    SigningError,
    ThresholdNotMet,
)
from controller.signing.keys import TOP_LEVEL_ROLES, KeyStore
from edgefleet.errors import InvalidInput
from edgefleet.updates.custom import encode_custom
from edgefleet.updates.names import check_model_file_name

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=Signed)
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
REQUIRED_CUSTOM = ("model", "profile")
_NAME_RE = re.compile(r"^(?:(\d+)\.)?(root|targets|snapshot|timestamp)\.json$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
_SERIALIZER = JSONSerializer(compact=False)


class ArtifactLike(Protocol):
    """Anything with a sha256 and a size (``controller.artifacts.ArtifactRef`` fits)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class ExpiryPolicy:
    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(weeks=4)
    snapshot: timedelta = timedelta(weeks=2)
    timestamp: timedelta = timedelta(days=1)

    def for_role(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value


def _utcnow() -> datetime:
    return datetime.now(UTC)


def target_path(model: str, version: int | str, variant: str, file: str) -> str:
    """The target path scheme: ``models/{model}/{version}/{variant}/{file}``."""
    parts = [model, str(version), variant, file]
    for part in parts:
        if not _SEGMENT_RE.match(part) or part in (".", ".."):
            raise InvalidTarget(f"invalid target path segment {part!r}")
    return "models/" + "/".join(parts)


class Repository:
    def __init__(
        self,
        metadata_dir: str | Path,
        keystore: KeyStore,
        expiry: ExpiryPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.dir = Path(metadata_dir)
        self.keystore = keystore
        self.expiry = expiry or ExpiryPolicy()
        self._clock = clock
        self._staged: dict[str, TargetFile] | None = None  # targets of the next publish()

    # ---- reading ---------------------------------------------------------------------------

    def metadata_file(self, name: str) -> bytes:
        """Raw signed bytes of ``root.json``, ``N.root.json``, ``timestamp.json``,
        ``snapshot.json``, ``N.snapshot.json``, ``targets.json`` or ``N.targets.json``."""
        if not _NAME_RE.match(name):
            raise MetadataNotFound(f"not a metadata file name: {name!r}")
        try:
            return (self.dir / name).read_bytes()
        except FileNotFoundError as exc:
            raise MetadataNotFound(f"no metadata file {name}") from exc
        except OSError as exc:
            raise SigningError(f"cannot read metadata {name}: {exc}") from exc

    def metadata_bytes(self, role: str, version: int | None = None) -> bytes:
        return self.metadata_file(f"{version}.{role}.json" if version else f"{role}.json")

    def _load(self, role: str, cls: type[T]) -> T:
        signed = Metadata.from_bytes(self.metadata_bytes(role)).signed
        if not isinstance(signed, cls):
            raise SigningError(f"{role}.json holds {signed.type} metadata")
        return signed

    def root(self) -> Root:
        return self._load("root", Root)

    def targets(self) -> dict[str, TargetFile]:
        return dict(self._load("targets", Targets).targets)

    # ---- writing ---------------------------------------------------------------------------

    def _expires(self, role: str) -> datetime:
        return (self._clock() + self.expiry.for_role(role)).replace(microsecond=0)

    def _write(self, name: str, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _persist(self, md: Metadata[Any]) -> bytes:
        role, version = md.signed.type, md.signed.version
        data = md.to_bytes(_SERIALIZER)
        if role != "timestamp":
            self._write(f"{version}.{role}.json", data)
        self._write(f"{role}.json", data)  # the latest copy is written last
        return data

    def _sign(self, md: Metadata[Any], root: Root, signers: Sequence[Signer] = ()) -> None:
        role = md.signed.type
        delegate = root.get_delegated_role(role)
        if not signers:
            signers = self.keystore.signers(role, delegate.keyids)
        _sign_all(md, signers)
        result = root.get_verification_result(role, md.signed_bytes, md.signatures)
        if not result.verified:
            raise ThresholdNotMet(
                f"{role} v{md.signed.version}: {len(result.signed)} of {delegate.threshold} "
                "required signatures available"
            )

    def init(
        self,
        root_signers: Sequence[Signer],
        root_threshold: int = 1,
        online_keys: dict[str, Sequence[Key]] | None = None,
    ) -> None:
        """Create version 1 of every role. Online public keys default to the keystore's."""
        if (self.dir / "root.json").exists():
            raise SigningError(f"a repository already exists in {self.dir}")
        if len(root_signers) < root_threshold:
            raise ThresholdNotMet(f"root threshold {root_threshold} needs as many root keys")
        root = Root(expires=self._expires("root"), consistent_snapshot=True)
        root.roles["root"] = Role([], root_threshold)
        for signer in root_signers:
            root.add_key(signer.public_key, "root")
        for role in ONLINE_ROLES:
            keys = (online_keys or {}).get(role)
            if keys is None:
                keys = [s.public_key for s in self.keystore.signers(role)]
            if not keys:
                raise SigningError(f"no {role} key in {self.keystore.dir}; run create_keys first")
            for key in keys:
                root.add_key(key, role)
        root_md = Metadata(root)
        self._sign(root_md, root, root_signers)
        self._persist(root_md)
        targets = Metadata(Targets(expires=self._expires("targets")))
        self._sign(targets, root)
        self._persist(targets)
        self._publish_snapshot_and_timestamp(root, new=True)
        logger.info("initialised TUF repository in %s", self.dir)

    def add_target(self, path: str, artifact: ArtifactLike, custom: dict[str, Any]) -> TargetFile:
        """Stage a target; it becomes visible to clients at the next ``publish()``."""
        missing = [k for k in REQUIRED_CUSTOM if not custom.get(k)]
        if missing:
            raise InvalidTarget(f"target {path} custom fields lack {missing}")
        if not path.startswith("models/") or ".." in path.split("/"):
            raise InvalidTarget(f"target path {path!r} is outside models/")
        bad = [p for p in path.split("/") if not _SEGMENT_RE.match(p) or p in (".", "..")]
        if bad:  # NUL, backslash, empty or dot segments
            raise InvalidTarget(f"invalid target path segment {bad[0]!r} in {path!r}")
        try:
            check_model_file_name(path.rsplit("/", 1)[-1])
            if "file" in custom:  # the name the device gives the model file in its slot
                check_model_file_name(custom["file"])
        except InvalidInput as exc:
            raise InvalidTarget(f"target {path}: {exc}") from exc
        try:
            encoded = encode_custom(dict(custom))
        except InvalidInput as exc:
            raise InvalidTarget(f"target {path}: {exc}") from exc
        target = TargetFile(
            length=artifact.size,
            hashes={"sha256": artifact.sha256},
            path=path,
            unrecognized_fields={"custom": encoded},
        )
        self._staged_targets()[path] = target
        return target

    def remove_target(self, path: str) -> None:
        staged = self._staged_targets()
        if path not in staged:
            raise MetadataNotFound(f"no target {path}")
        del staged[path]

    def reload(self) -> None:
        """Forget staged targets: the next change starts from the targets on disk (another
        process sharing the directory may have published since)."""
        self._staged = None

    def _staged_targets(self) -> dict[str, TargetFile]:
        if self._staged is None:
            self._staged = self.targets()
        return self._staged

    def publish(self) -> int:
        """Sign staged targets as a new targets version, then snapshot and timestamp.
        Returns the new targets version."""
        root = self.root()
        current = self._load("targets", Targets)
        targets = Targets(
            version=current.version + 1,
            expires=self._expires("targets"),
            targets=dict(self._staged_targets()),
        )
        md = Metadata(targets)
        self._sign(md, root)
        self._persist(md)
        self._publish_snapshot_and_timestamp(root)
        logger.info("published targets v%d (%d targets)", targets.version, len(targets.targets))
        return targets.version

    def _publish_snapshot_and_timestamp(self, root: Root, new: bool = False) -> None:
        targets_version = self._load("targets", Targets).version
        snap_version = 1 if new else self._load("snapshot", Snapshot).version + 1
        snapshot = Snapshot(
            version=snap_version,
            expires=self._expires("snapshot"),
            meta={"targets.json": MetaFile(version=targets_version)},
        )
        snap_md = Metadata(snapshot)
        self._sign(snap_md, root)
        self._persist(snap_md)
        self._sign_timestamp(root, snap_version, None if new else self._timestamp_version())

    def _timestamp_version(self) -> int:
        return self._load("timestamp", Timestamp).version

    def _sign_timestamp(self, root: Root, snapshot_version: int, prev: int | None) -> None:
        timestamp = Timestamp(
            version=1 if prev is None else prev + 1,
            expires=self._expires("timestamp"),
            snapshot_meta=MetaFile(version=snapshot_version),
        )
        md = Metadata(timestamp)
        self._sign(md, root)
        self._persist(md)

    def refresh_timestamp(self) -> int:
        """Re-sign the timestamp with a fresh expiry (run at least once per timestamp expiry)."""
        prev = self._load("timestamp", Timestamp)
        self._sign_timestamp(self.root(), prev.snapshot_meta.version, prev.version)
        return prev.version + 1

    def republish(self) -> None:
        """Re-sign targets, snapshot and timestamp with fresh expiries and current keys."""
        self.publish()

    # ---- root changes (need root keys) -----------------------------------------------------

    def rotate_key(
        self,
        role: str,
        root_signers: Sequence[Signer],
        new_signers: Sequence[Signer] | None = None,
        revoke: Iterable[str] | None = None,
        threshold: int | None = None,
        passphrase: bytes | None = None,
    ) -> list[Signer]:
        """Replace keys of ``role`` and sign a new root version.

        ``root_signers`` are the current root keys (at least the current threshold).
        ``new_signers`` default to one fresh key from the keystore (encrypted with
        ``passphrase``); ``revoke`` defaults to every current key of the role. For a root
        rotation the new root is signed by both the old threshold and the new keys, so
        clients walk from the old root to the new one. Online roles are re-signed.
        """
        if role not in TOP_LEVEL_ROLES:
            raise SigningError(f"unknown role {role!r}")
        root = self.root()
        trusted_root = root.roles["root"]
        usable = {s.public_key.keyid for s in root_signers} & set(trusted_root.keyids)
        if len(usable) < trusted_root.threshold:
            raise ThresholdNotMet(
                f"changing root needs {trusted_root.threshold} current root keys (previous "
                f"root threshold), got {len(usable)}"
            )
        new = list(new_signers or [self.keystore.generate(role, passphrase)])
        for keyid in list(root.roles[role].keyids if revoke is None else revoke):
            root.revoke_key(keyid, role)
        for signer in new:
            root.add_key(signer.public_key, role)
        if threshold is not None:
            root.roles[role].threshold = threshold
        still_root = [s for s in root_signers if s.public_key.keyid in root.roles["root"].keyids]
        extra = new if role == "root" else []
        self._write_root(root, list(root_signers), still_root + extra)
        if role != "root":
            self.republish()
        logger.info("rotated %s keys; root is now v%d", role, root.version)
        return list(new)

    def resign_root(self, root_signers: Sequence[Signer]) -> int:
        """Sign a new root version with a fresh expiry and unchanged keys."""
        root = self.root()
        self._write_root(root, list(root_signers), list(root_signers))
        return root.version

    def _write_root(
        self, new_root: Root, old_signers: list[Signer], new_signers: list[Signer]
    ) -> None:
        old_root = self.root()
        new_root.version = old_root.version + 1
        new_root.expires = self._expires("root")
        md = Metadata(new_root)
        by_keyid = {s.public_key.keyid: s for s in [*old_signers, *new_signers]}
        _sign_all(md, list(by_keyid.values()))
        for trusted, label in ((old_root, "previous"), (new_root, "new")):
            result = trusted.get_verification_result("root", md.signed_bytes, md.signatures)
            if not result.verified:
                raise ThresholdNotMet(
                    f"root v{new_root.version} lacks the {label} root threshold "
                    f"({len(result.signed)} of {trusted.roles['root'].threshold})"
                )
        self._persist(md)


def _sign_all(md: Metadata[Any], signers: Sequence[Signer]) -> None:
    md.signatures.clear()
    for signer in signers:
        try:
            md.sign(signer, append=True)
        except UnsignedMetadataError as exc:
            raise SigningError(f"signing {md.signed.type} failed") from exc
