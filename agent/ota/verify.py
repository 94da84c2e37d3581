"""TUF verification of a desired target before (preflight) and after the download."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgefleet.errors import EdgeFleetError, VerificationError
from edgefleet.updates import Transport, TrustedUpdater, VerifiedTarget

log = logging.getLogger(__name__)

ROOT_BOOTSTRAP = "metadata/1.root.json"


class TufVerifier:
    """Checks a target against signed metadata: signatures, thresholds, expiry, versions,
    and that the target is meant for this device's profile and the variant it names.

    The trust root lives in ``metadata_dir``; when missing it is fetched once at first use
    (trust on first use over the device's mutually authenticated channel).
    """

    def __init__(
        self, metadata_dir: Path, transport: Transport, profile: str,
        bootstrap_root: bytes | None = None,
    ) -> None:  # fmt: skip
        self.dir, self._transport, self.profile = Path(metadata_dir), transport, profile
        self._bootstrap = bootstrap_root

    def _updater(self) -> TrustedUpdater:
        root = self._bootstrap
        if root is None and not (self.dir / "root.json").exists():
            data = self._transport(ROOT_BOOTSTRAP)
            root = data if isinstance(data, bytes) else b"".join(data)
        return TrustedUpdater(self.dir, self._transport, bootstrap_root=root)

    def preflight(self, target: Mapping[str, Any]) -> VerifiedTarget:
        """Refresh metadata and return the signed target (raises VerificationError)."""
        custom = target.get("custom") if isinstance(target, Mapping) else None
        variant_id = custom.get("variant_id") if isinstance(custom, Mapping) else None
        updater = self._updater()
        updater.refresh()
        signed = updater.get_target(str(target["path"]), self.profile, variant_id=variant_id)
        hashes = target.get("hashes") or {}
        if signed.length != target.get("length") or signed.sha256 != hashes.get("sha256"):
            raise VerificationError(
                f"target {signed.path}: desired length/sha256 differ from signed metadata"
            )
        return signed

    def verify_file(self, target: Mapping[str, Any], path: Path) -> None:
        """The ``Updater`` verify hook: signed target again, then the file's length and hash."""
        signed = self.preflight(target)
        size = path.stat().st_size
        if size != signed.length:
            raise VerificationError(f"length {size} != signed {signed.length}")
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        if h.hexdigest() != signed.sha256:
            raise VerificationError("artifact sha256 does not match signed metadata")


def as_verify(
    preflight: Callable[[Mapping[str, Any]], object],
) -> Callable[[Mapping[str, Any]], str | None]:
    """Wrap ``preflight`` to return a refusal reason instead of raising."""

    def check(target: Mapping[str, Any]) -> str | None:
        try:
            preflight(target)
        except (EdgeFleetError, KeyError, TypeError) as exc:
            return f"verification failed: {exc}"
        return None

    return check
