"""TUF verification of a desired target before (preflight) and after the download.

The trust anchor is the ``root.json`` pinned at enrollment (``agent.enroll`` writes it into
``metadata_dir``); python-tuf only accepts newer roots that chain from it. A device without
one refuses every update (``NoTrustedRoot``) instead of trusting whatever root it is served.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgefleet.errors import VerificationError
from edgefleet.updates import Transport, TrustedUpdater, VerifiedTarget
from edgefleet.updates.custom import variant_fields
from edgefleet.updates.errors import MetadataError

log = logging.getLogger(__name__)

PINNED_ROOT = "root.json"


class NoTrustedRoot(MetadataError):
    """The device holds no TUF root pinned at enrollment, so it trusts no release."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


class TufVerifier:
    """Checks a target against signed metadata: signatures, thresholds, expiry, versions,
    and that the target is meant for this device's profile and the variant it names.

    ``bootstrap_root`` (the root pinned at enrollment) is written into ``metadata_dir`` only
    when it holds no root yet; there is no trust on first use.
    """

    def __init__(
        self, metadata_dir: Path, transport: Transport, profile: str,
        bootstrap_root: bytes | None = None,
    ) -> None:  # fmt: skip
        self.dir, self._transport, self.profile = Path(metadata_dir), transport, profile
        self._bootstrap = bootstrap_root

    def _updater(self) -> TrustedUpdater:
        if self._bootstrap is None and not (self.dir / PINNED_ROOT).exists():
            raise NoTrustedRoot(
                f"no TUF root pinned at enrollment in {self.dir}: refusing every update "
                "(re-enroll the device to pin the controller's root)"
            )
        return TrustedUpdater(self.dir, self._transport, bootstrap_root=self._bootstrap)

    def preflight(self, target: Mapping[str, Any]) -> VerifiedTarget:
        """Refresh metadata and return the signed target (raises VerificationError) after
        checking the length and sha256 ``target`` claims against it."""
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

    def verify_target(self, target: Mapping[str, Any]) -> VerifiedTarget:
        """``target`` (as stored in a slot or about to be) is exactly a signed target for this
        device's profile: path, length, sha256 and every variant field of its custom
        metadata (labels, temperature, file...). Release fields (``selected``) may change."""
        signed = self.preflight(target)
        mine = variant_fields(dict(target.get("custom") or {}))
        if _canonical(mine) != _canonical(variant_fields(signed.custom)):
            raise VerificationError(
                f"target {signed.path}: metadata differs from the signed target's"
            )
        return signed

    def verify_file(self, target: Mapping[str, Any], path: Path) -> None:
        """The ``Updater`` verify hook, after the download's length and sha256 were checked
        once while streaming: the target is still signed, metadata included."""
        self.verify_target(target)
