"""Verify signed model updates on a device with python-tuf's ngclient.

The device keeps a trusted ``root.json`` in ``metadata_dir`` (written at provisioning).
``TrustedUpdater.refresh()`` walks to newer roots, then loads timestamp, snapshot and
targets, enforcing signatures and thresholds, expiry (freeze attacks) and monotonic versions
(rollback attacks) — python-tuf's ``Updater`` does these checks and caches what it trusted
in ``metadata_dir``. ``get_target`` then checks the target's custom fields name this device's
profile (mix-and-match), and ``download_target`` streams the artifact through
``verify_artifact_stream`` (length and sha256, endless data) into an atomically replaced file.

Bytes travel through a caller-supplied ``Transport``: ``transport(path)`` returns the bytes
(or an iterator of chunks) of ``metadata/<name>.json`` or ``targets/<dir>/<sha256>.<file>``
and raises ``edgefleet.errors.NotFound`` or ``FileNotFoundError`` when there is no such
file. The agent plugs its gRPC client in here; tests plug in a controller-side repository.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from edgefleet.errors import EdgeFleetError, NotFound
from edgefleet.updates.custom import decode_custom
from edgefleet.updates.errors import (
    BadSignature,
    MetadataError,
    MetadataExpired,
    MixAndMatch,
    RollbackDetected,
    TargetNotFound,
    UpdateUnavailable,
)
from edgefleet.updates.stream import verify_artifact_stream

logger = logging.getLogger(__name__)

Transport = Callable[[str], bytes | Iterable[bytes]]
_BASE = "edgefleet:///"  # ngclient wants URLs; the fetcher strips this back to a path
METADATA_BASE = _BASE + "metadata/"
TARGETS_BASE = _BASE + "targets/"


class UpdateStorageError(EdgeFleetError):
    """The device could not read or write its local metadata cache or a target file."""


class TransportFetcher(FetcherInterface):
    """Adapts a ``Transport`` callable to python-tuf's fetcher interface."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(_BASE):
            raise tuf_errors.DownloadError(f"unexpected URL {url}")
        path = url[len(_BASE) :]
        try:
            data = self._transport(path)
        except (NotFound, FileNotFoundError) as exc:
            raise tuf_errors.DownloadHTTPError(f"{path} not found", 404) from exc
        if isinstance(data, bytes | bytearray | memoryview):
            return iter([bytes(data)])
        return _wrap_errors(path, data)


def _wrap_errors(path: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except Exception as exc:
        raise tuf_errors.DownloadError(f"transfer of {path} failed: {exc}") from exc


def _translate(exc: Exception) -> EdgeFleetError:
    """Map python-tuf's exceptions onto ours, keeping its message."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return MetadataExpired(f"expired metadata: {msg}")
    if isinstance(exc, tuf_errors.EqualVersionNumberError):
        return MetadataError(f"unexpected metadata version: {msg}")
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return RollbackDetected(f"metadata version rollback: {msg}")
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return BadSignature(f"bad metadata signatures: {msg}")
    if isinstance(exc, tuf_errors.RepositoryError):
        return MetadataError(f"invalid metadata: {msg}")
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return MetadataError(f"metadata too long: {msg}")
    if isinstance(exc, tuf_errors.DownloadError):
        return UpdateUnavailable(f"download failed: {msg}")
    if isinstance(exc, OSError):
        return UpdateStorageError(f"local metadata cache: {msg}")
    raise exc


@dataclass(frozen=True)
class VerifiedTarget:
    """A target listed in verified metadata and meant for this device."""

    path: str
    length: int
    sha256: str
    custom: dict[str, Any]

    @property
    def fetch_path(self) -> str:
        """Transport path of the artifact (consistent snapshots: sha256-prefixed name)."""
        parent, sep, name = self.path.rpartition("/")
        return f"targets/{parent}{sep}{self.sha256}.{name}"


class TrustedUpdater:
    def __init__(
        self,
        metadata_dir: str | Path,
        transport: Transport,
        bootstrap_root: bytes | None = None,
        config: UpdaterConfig | None = None,
    ) -> None:
        """``bootstrap_root`` is used only when ``metadata_dir`` has no trusted root yet."""
        self.dir = Path(metadata_dir)
        self._transport = transport
        self._config = config or UpdaterConfig()
        self._bootstrap = None if (self.dir / "root.json").exists() else bootstrap_root
        if self._bootstrap is None and not (self.dir / "root.json").exists():
            raise UpdateStorageError(f"no trusted root.json in {self.dir}")
        self._updater: Updater | None = None

    def _new_updater(self) -> Updater:
        self.dir.mkdir(parents=True, exist_ok=True)
        updater = Updater(
            str(self.dir),
            METADATA_BASE,
            target_base_url=TARGETS_BASE,
            fetcher=TransportFetcher(self._transport),
            config=self._config,
            bootstrap=self._bootstrap,
        )
        self._bootstrap = None  # from now on the cached root.json is the trust anchor
        return updater

    def refresh(self) -> None:
        """Load and verify the newest root, timestamp, snapshot and targets."""
        try:
            updater = self._new_updater()
            updater.refresh()
        except Exception as exc:
            raise _translate(exc) from exc
        self._updater = updater
        logger.debug("release metadata refreshed from %s", self.dir)

    def get_target(
        self,
        path: str,
        profile: str,
        model: str | None = None,
        variant: str | None = None,
        variant_id: str | None = None,
    ) -> VerifiedTarget:
        """Find ``path`` in verified metadata and check it is meant for this device."""
        if self._updater is None:
            self.refresh()
        assert self._updater is not None
        try:
            info = self._updater.get_targetinfo(path)
        except Exception as exc:
            raise _translate(exc) from exc
        if info is None:
            raise TargetNotFound(f"target {path} is not in signed metadata")
        custom = _custom_of(info)
        expected = {
            "profile": profile,
            "model": model,
            "variant": variant,
            "variant_id": variant_id,
        }
        for field, want in expected.items():
            if want is not None and custom.get(field) != want:
                raise MixAndMatch(
                    f"target {path} is signed for {field}={custom.get(field)!r}, "
                    f"this device expects {want!r}"
                )
        sha256 = info.hashes.get("sha256")
        if not sha256:
            raise MetadataError(f"target {path} has no sha256 hash")
        return VerifiedTarget(path=path, length=info.length, sha256=sha256, custom=custom)

    def verify_stream(
        self, target: VerifiedTarget, chunks: Iterable[bytes], sink: Callable[[bytes], object]
    ) -> str:
        """Verify artifact chunks from any source against a verified target."""
        return verify_artifact_stream(chunks, target.length, target.sha256, sink)

    def download_target(self, target: VerifiedTarget, dest: str | Path) -> Path:
        """Fetch, verify and atomically write the artifact; nothing is left on failure."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = _artifact_chunks(self._transport, target.fetch_path)
                self.verify_stream(target, chunks, out.write)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, dest)
        except OSError as exc:
            raise UpdateStorageError(f"cannot write {dest}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        logger.info("verified target %s (%d bytes) into %s", target.path, target.length, dest)
        return dest


def _artifact_chunks(transport: Transport, path: str) -> Iterator[bytes]:
    """Chunks of an artifact; transport failures become ``UpdateUnavailable``."""
    try:
        data = transport(path)
        if isinstance(data, bytes | bytearray | memoryview):
            yield bytes(data)
        else:
            yield from data
    except EdgeFleetError as exc:
        if isinstance(exc, NotFound):
            raise UpdateUnavailable(f"artifact {path} not found") from exc
        raise
    except FileNotFoundError as exc:
        raise UpdateUnavailable(f"artifact {path} not found") from exc
    except Exception as exc:
        raise UpdateUnavailable(f"transfer of {path} failed: {exc}") from exc


def _custom_of(info: TargetFile) -> dict[str, Any]:
    custom = info.custom
    if not isinstance(custom, dict):
        raise MetadataError(f"target {info.path} has no custom fields")
    decoded: dict[str, Any] = decode_custom(custom)
    return decoded
