"""Two model slots (A and B) and a state file, updated so that a crash at any instant leaves a
working model.

Layout under ``root``::

    state.json              active/previous slot, probation, boot attempts, last good, trust
    slots/A/, slots/B/      model file, variant.json, target.json, manifest.json (written last)
    downloads/<sha256>.part resumable partial downloads

Every write goes to a temporary name, is fsynced, renamed into place and its directory is
fsynced. A slot counts as installed only once its ``manifest.json`` exists; ``recover()``
wipes a spare slot without one and falls back when the active slot's files no longer match.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from agent.ota.errors import DiskFull, InstallFailed, SlotCorrupted
from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import VariantMetadata
from edgefleet.updates.custom import variant_fields
from edgefleet.updates.names import (
    MANIFEST_FILE,
    TARGET_FILE,
    VARIANT_FILE,
    check_model_file_name,
)

log = logging.getLogger(__name__)

SLOTS = ("A", "B")
STATE_FILE = "state.json"
_CHUNK = 1 << 20

Writer = Callable[[BinaryIO, bytes], None]


def write_all(fh: BinaryIO, data: bytes) -> None:
    fh.write(data)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _other(slot: str) -> str:
    return "B" if slot == "A" else "A"


@dataclass(frozen=True)
class Probation:
    """A freshly activated slot that has not yet proved itself."""

    slot: str
    variant_id: str
    boot_attempts: int = 0
    max_boot_attempts: int = 3


@dataclass(frozen=True)
class SlotState:
    active: str | None = None
    previous: str | None = None
    probation: Probation | None = None
    last_good: str | None = None  # variant id
    trusted_versions: Mapping[str, int] = field(default_factory=dict)  # TUF role -> version
    last_event: str = ""
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trusted_versions"] = dict(self.trusted_versions)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlotState:
        d = dict(data)
        if d.get("probation"):
            d["probation"] = Probation(**d["probation"])
        for key in ("active", "previous"):
            if d.get(key) not in (None, *SLOTS):
                raise ValueError(f"{key} slot must be A or B")
        return cls(**d)


@dataclass(frozen=True)
class InstalledSlot:
    name: str
    path: Path
    variant_id: str
    model_file: str
    files: Mapping[str, str]  # file name -> sha256
    target: Mapping[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file


@dataclass(frozen=True)
class Recovery:
    """What ``recover()`` found: the slot to run (None on a device with no model yet)."""

    slot: InstalledSlot | None
    state: SlotState
    events: tuple[str, ...] = ()

    @property
    def rolled_back(self) -> bool:
        return any(e.startswith("rolled back") for e in self.events)


class SlotStore:
    def __init__(
        self, root: Path, *, write: Writer = write_all, max_boot_attempts: int = 3
    ) -> None:
        self.root = Path(root)
        self._write = write
        self.max_boot_attempts = max_boot_attempts
        for sub in ("slots/A", "slots/B", "downloads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- state file -----------------------------------------------------------------------
    def slot_dir(self, slot: str) -> Path:
        return self.root / "slots" / slot

    def state(self) -> SlotState:
        path = self.root / STATE_FILE
        try:
            return SlotState.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return SlotState()
        except (ValueError, TypeError) as exc:
            # Never reached through our own atomic writes; only disk damage gets here.
            log.error("OTA state file %s unreadable (%s); rebuilding from slots", path, exc)
            return SlotState(last_event=f"state file unreadable: {exc}")

    def _save(self, state: SlotState) -> SlotState:
        state = replace(state, generation=state.generation + 1)
        self._atomic_write(self.root / STATE_FILE, json.dumps(state.to_dict(), indent=1).encode())
        return state

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tmp.open("wb") as fh:
                self._write(fh, data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def inactive_slot(self) -> str:
        active = self.state().active
        return "A" if active is None else _other(active)

    # -- downloads ------------------------------------------------------------------------
    def download_path(self, sha256: str) -> Path:
        return self.root / "downloads" / f"{sha256}.part"

    def download_offset(self, sha256: str) -> int:
        path = self.download_path(sha256)
        return path.stat().st_size if path.exists() else 0

    def open_download(self, sha256: str, offset: int) -> BinaryIO:
        """Open the partial download for appending at ``offset`` (dropping any bytes past it)."""
        path = self.download_path(sha256)
        fh = path.open("r+b" if path.exists() else "w+b")
        fh.truncate(offset)
        fh.seek(offset)
        return fh

    def append(self, fh: BinaryIO, chunk: bytes) -> None:
        try:
            self._write(fh, chunk)
        except OSError as exc:
            raise _install_error("download", exc) from exc

    def discard_downloads(self, keep: str | None = None) -> None:
        for part in (self.root / "downloads").glob("*.part"):
            if part.name != f"{keep}.part":
                part.unlink(missing_ok=True)

    # -- install / activate / commit / rollback -------------------------------------------
    def install(
        self, target: Mapping[str, Any], model_file: str, variant_json: str
    ) -> InstalledSlot:
        """Move the verified download of ``target`` into the spare slot, durably.

        On any failure (disk full included) the spare slot is wiped and ``InstallFailed``
        raised; the active slot and the state file are never touched.
        """
        sha = str(target["hashes"]["sha256"])
        try:
            check_model_file_name(model_file)
        except InvalidInput as exc:
            raise InstallFailed(str(exc)) from exc
        src = self.download_path(sha)
        state = self.state()
        slot = "A" if state.active is None else _other(state.active)
        dest = self.slot_dir(slot)
        try:
            if state.previous == slot:  # the fallback is about to be overwritten
                self._save(replace(state, previous=None, last_event=f"reusing slot {slot}"))
            self._wipe(slot)
            os.replace(src, dest / model_file)  # verified while it streamed: not hashed again
            files = {model_file: sha}
            self._atomic_write(dest / VARIANT_FILE, variant_json.encode())
            self._atomic_write(dest / TARGET_FILE, json.dumps(dict(target)).encode())
            files[VARIANT_FILE] = sha256_file(dest / VARIANT_FILE)
            files[TARGET_FILE] = sha256_file(dest / TARGET_FILE)
            fsync_dir(dest)
            manifest = {
                "variant_id": target["variant_id"],
                "model_file": model_file,
                "files": files,
            }
            self._atomic_write(dest / MANIFEST_FILE, json.dumps(manifest).encode())
        except (OSError, InstallFailed) as exc:
            with contextlib.suppress(OSError):
                self._wipe(slot)
            if isinstance(exc, InstallFailed):
                raise
            raise _install_error(f"install into slot {slot}", exc) from exc
        return self.verify_slot(slot, rehash_model=False)

    def activate(self, slot: str, *, rehash_model: bool = True) -> SlotState:
        """Atomically switch to ``slot`` and put it on probation. The slot is verified
        first; ``rehash_model=False`` only for the slot just installed from a verified
        download (its model file was hashed while it streamed)."""
        installed = self.verify_slot(slot, rehash_model=rehash_model)
        state = self.state()
        previous = state.active if state.active != slot else state.previous
        probation = Probation(slot, installed.variant_id, 0, self.max_boot_attempts)
        event = f"activated {installed.variant_id} in slot {slot}"
        return self._save(
            replace(state, active=slot, previous=previous, probation=probation, last_event=event)
        )

    def commit(self) -> SlotState:
        state = self.state()
        if state.probation is None or state.active is None:
            return state
        event = f"committed {state.probation.variant_id}"
        good = state.probation.variant_id
        return self._save(replace(state, probation=None, last_good=good, last_event=event))

    def rollback(self, reason: str) -> SlotState:
        """Switch back to the previous slot (if it still verifies)."""
        state = self.state()
        if state.previous is None:
            raise SlotCorrupted(f"cannot roll back ({reason}): no previous slot")
        self.verify_slot(state.previous)
        event = f"rolled back to slot {state.previous}: {reason}"
        return self._save(
            replace(state, active=state.previous, previous=None, probation=None, last_event=event)
        )

    def set_trusted_versions(self, versions: Mapping[str, int]) -> SlotState:
        return self._save(replace(self.state(), trusted_versions=dict(versions)))

    # -- verification and recovery --------------------------------------------------------
    def verify_slot(self, slot: str, *, rehash_model: bool = True) -> InstalledSlot:
        """Return the slot if its manifest exists and every file matches; else SlotCorrupted.
        ``rehash_model=False`` skips re-reading the (large) model file, not the metadata."""
        path = self.slot_dir(slot)
        try:
            manifest = json.loads((path / MANIFEST_FILE).read_text())
            files = {str(k): str(v) for k, v in manifest["files"].items()}
            target = json.loads((path / TARGET_FILE).read_text())
            variant_id, model_file = str(manifest["variant_id"]), str(manifest["model_file"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SlotCorrupted(f"slot {slot} holds no complete install: {exc}") from exc
        for name, digest in files.items():
            if name == model_file and not rehash_model:
                if not (path / name).is_file():
                    raise SlotCorrupted(f"slot {slot}: {name} is missing")
                continue
            try:
                actual = sha256_file(path / name)
            except OSError as exc:
                raise SlotCorrupted(f"slot {slot}: {name} unreadable: {exc}") from exc
            if actual != digest:
                raise SlotCorrupted(f"slot {slot}: {name} sha256 {actual[:12]} != {digest[:12]}")
        if files.get(model_file) != target.get("hashes", {}).get("sha256"):
            raise SlotCorrupted(f"slot {slot}: model hash differs from its target info")
        _check_metadata(slot, path, target, model_file, variant_id)
        return InstalledSlot(slot, path, variant_id, model_file, files, target)

    def recover(self) -> Recovery:
        """Call once at every agent start, before loading a model: returns a verified slot."""
        state = self.state()
        events: list[str] = []
        if state.last_event.startswith("state file unreadable"):
            events.append(state.last_event)
        verified: dict[str, InstalledSlot] = {}
        for slot in SLOTS:
            try:
                verified[slot] = self.verify_slot(slot)
            except SlotCorrupted as exc:
                if slot == state.active:
                    events.append(f"active {exc}")
                elif any(self.slot_dir(slot).iterdir()):
                    self._wipe(slot)
                    events.append(f"wiped incomplete install: {exc}")
        active, previous, probation = state.active, state.previous, state.probation
        if previous not in verified:
            previous = None
        if probation is not None and probation.slot == active and active in verified:
            probation = replace(probation, boot_attempts=probation.boot_attempts + 1)
            if probation.boot_attempts > probation.max_boot_attempts:
                crashes = probation.boot_attempts - 1
                reason = f"{probation.variant_id} crashed {crashes} times in probation"
                if previous is None:  # nothing to go back to: keep the only model we have
                    events.append(f"{reason}; no previous slot, keeping it")
                else:
                    events.append(self._fallback_event(previous, reason))
                    active, previous = previous, None
                probation = None
        if active is not None and active not in verified:
            reason = f"slot {active} failed verification"
            fallback = previous or next((s for s in SLOTS if s in verified), None)
            events.append(self._fallback_event(fallback, reason))
            active, previous, probation = fallback, None, None
        if active is None and verified and state.last_event.startswith("state file unreadable"):
            # Disk damage ate the state: run what verifies, preferring the last good variant.
            good = [s for s in SLOTS if s in verified and verified[s].variant_id == state.last_good]
            active = (good or list(verified))[0]
            events.append(f"adopted slot {active} after losing the state file")
        # A complete install that was never activated stays inactive: it had no smoke test.
        new = replace(state, active=active, previous=previous, probation=probation,
                      last_event="; ".join(events) or state.last_event)  # fmt: skip
        if new != state:
            new = self._save(new)
        for e in events:
            log.warning("OTA recovery: %s", e)
        return Recovery(verified.get(active) if active else None, new, tuple(events))

    def _fallback_event(self, slot: str | None, reason: str) -> str:
        if slot is None:
            return f"no working slot left: {reason}"
        return f"rolled back to slot {slot}: {reason}"

    def _wipe(self, slot: str) -> None:
        path = self.slot_dir(slot)
        marker = path / MANIFEST_FILE
        if marker.exists():  # drop the completeness marker first, durably
            marker.unlink()
            fsync_dir(path)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        fsync_dir(path.parent)


def _check_metadata(
    slot: str, path: Path, target: Mapping[str, Any], model_file: str, variant_id: str
) -> None:
    """The slot's variant.json is exactly the variant metadata of the target it was
    verified against at install (its signed custom fields), naming the same file."""
    custom = target.get("custom")
    try:
        if not isinstance(custom, Mapping):
            raise ValueError("its target info has no custom metadata")
        signed = VariantMetadata.from_dict(variant_fields(dict(custom)))
        installed = json.loads((path / VARIANT_FILE).read_text())
    except (OSError, ValueError, InvalidInput) as exc:
        raise SlotCorrupted(f"slot {slot}: metadata unreadable: {exc}") from exc
    want = json.loads(json.dumps(signed.to_dict()))
    if installed != want or signed.file != model_file or signed.variant_id != variant_id:
        got = installed if isinstance(installed, dict) else {}
        differ = sorted(k for k in want if got.get(k) != want[k]) or ["file"]
        raise SlotCorrupted(
            f"slot {slot}: variant metadata differs from its verified target ({differ})"
        )


def _install_error(what: str, exc: OSError) -> InstallFailed:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{what}: disk full ({exc})")
    return InstallFailed(f"{what}: {exc}")
