"""The controller's TUF repository: created at first start, re-signed in the background.

Layout under ``<data_dir>/tuf/``: ``keys/<role>/<keyid>.pem`` (0600) and ``metadata/``.
``Releases`` serialises every change to the repository (model builds stage targets and
publish; a background thread refreshes the timestamp before it expires).

Replicas share one repository: a shared volume mounted at ``<data_dir>/tuf``. ``exclusive``
is then a lock across processes (a PostgreSQL advisory lock) held around the first creation
and every change, and each change stages from the targets on disk, never from this process's
memory, so one replica's publish never drops another's targets.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata

from controller.signing import ExpiryPolicy, KeyStore, Repository, create_keys
from controller.signing.errors import MetadataNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TufPaths:
    root: Path

    @classmethod
    def of(cls, data_dir: Path) -> TufPaths:
        return cls(Path(data_dir) / "tuf")

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"


@dataclass(frozen=True)
class StagedTarget:
    path: str
    sha256: str
    size: int
    custom: dict[str, Any]


def initialise(
    paths: TufPaths,
    *,
    root_threshold: int = 1,
    root_keys: int | None = None,
    offline_root: Path | None = None,
    passphrase: bytes | None = None,
    expiry: ExpiryPolicy | None = None,
) -> Repository:
    """Create keys (root keys in ``offline_root`` when given) and version 1 metadata."""
    keystore = KeyStore(paths.keys)
    repo = Repository(paths.metadata, keystore, expiry)
    if (paths.metadata / "root.json").exists():
        from controller.signing import SigningError

        raise SigningError(f"a TUF repository already exists in {paths.metadata}")
    root_dir = offline_root or paths.keys
    create_keys(root_dir, ("root",), root_threshold, root_keys, passphrase)
    create_keys(paths.keys, ("targets", "snapshot", "timestamp"))
    root_signers = KeyStore(root_dir).signers("root", passphrase=passphrase)
    repo.init(root_signers, root_threshold)
    return repo


class Releases:
    """Thread-safe front of the ``Repository`` the controller publishes model targets in.
    ``exclusive()``: a lock shared with the other replicas (default: none, one process)."""

    def __init__(
        self,
        paths: TufPaths,
        expiry: ExpiryPolicy | None = None,
        exclusive: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self.paths = paths
        self.expiry = expiry or ExpiryPolicy()
        self._exclusive = exclusive
        with exclusive():  # two replicas starting on an empty directory create it once
            if (paths.metadata / "root.json").exists():
                self.repo = Repository(paths.metadata, KeyStore(paths.keys), self.expiry)
            else:
                self.repo = initialise(paths, expiry=self.expiry)
                log.info("created TUF keys and metadata in %s", paths.root)
        self._lock = threading.Lock()

    def metadata_file(self, name: str) -> bytes:
        with self._lock:
            return self.repo.metadata_file(name)

    def trusted_root(self) -> bytes:
        """The current signed ``root.json``: what a device pins at enrollment."""
        return self.metadata_file("root.json")

    def replace_targets(self, prefix: str, targets: Iterable[StagedTarget]) -> int:
        """Drop every target under ``prefix``, add ``targets``, publish; the targets version."""
        with self._lock, self._exclusive():
            self.repo.reload()  # stage from disk: another replica may have published
            for path in [p for p in self.repo.targets() if p.startswith(prefix)]:
                self._remove(path)
            for t in targets:
                self.repo.add_target(t.path, _Ref(t.sha256, t.size), t.custom)
            return self.repo.publish()

    def _remove(self, path: str) -> None:
        with contextlib.suppress(MetadataNotFound):
            self.repo.remove_target(path)

    def targets(self) -> Mapping[str, Any]:
        with self._lock:
            return self.repo.targets()

    def refresh_if_due(self, now: datetime | None = None) -> bool:
        """Re-sign the timestamp when half its lifetime is gone (and re-publish when the
        snapshot or targets expire within a timestamp lifetime)."""
        now = now or datetime.now(UTC)
        with self._lock, self._exclusive():
            self.repo.reload()
            lifetime = self.expiry.timestamp
            ts = Metadata.from_bytes(self.repo.metadata_bytes("timestamp")).signed
            soonest = min(
                Metadata.from_bytes(self.repo.metadata_bytes(r)).signed.expires
                for r in ("snapshot", "targets")
            )
            if soonest - now < lifetime:
                self.repo.publish()
                return True
            if ts.expires - now < lifetime / 2:
                self.repo.refresh_timestamp()
                return True
            return False

    def refresh_interval_s(self) -> float:
        return max(1.0, min(3600.0, self.expiry.timestamp / timedelta(seconds=1) / 8))


@dataclass(frozen=True)
class _Ref:
    sha256: str
    size: int
