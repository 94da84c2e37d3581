"""A bounded on-disk FIFO of serialized reports, for when the broker is unreachable."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from agent.errors import AgentError

log = logging.getLogger(__name__)

_SUFFIX = ".report"
_DROPPED_FILE = "dropped"


class SpoolError(AgentError):
    """The spool directory cannot be read or written."""


class DiskSpool:
    """One file per report, named by a monotonically increasing key, written atomically.

    Delivery is in key order: `pending()` yields (key, payload) oldest first and `ack(key)`
    removes a delivered one. Beyond `max_reports` the oldest are dropped; `take_dropped()`
    returns (and resets) how many, so the next report can carry `reports_dropped`. Both the
    reports and the drop count survive a restart.
    """

    def __init__(self, directory: str | Path, max_reports: int = 1000) -> None:
        if max_reports < 1:
            raise ValueError("max_reports must be >= 1")
        self.directory = Path(directory)
        self.max_reports = max_reports
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.directory.glob("*.tmp"):
                leftover.unlink()
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc}") from exc
        keys = self._keys()
        self._next_key = (keys[-1] + 1) if keys else 1
        self._dropped = self._read_dropped()

    def _keys(self) -> list[int]:
        keys = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                keys.append(int(path.stem))
            except ValueError:
                log.warning("ignoring unexpected file %s in spool", path)
        return sorted(keys)

    def _path(self, key: int) -> Path:
        return self.directory / f"{key:020d}{_SUFFIX}"

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _read_dropped(self) -> int:
        try:
            return int((self.directory / _DROPPED_FILE).read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("unreadable spool drop count, starting from 0: %s", exc)
            return 0

    def _store_dropped(self) -> None:
        self._write_atomic(self.directory / _DROPPED_FILE, str(self._dropped).encode())

    def append(self, payload: bytes) -> int:
        """Store a report; drops the oldest ones beyond the bound. Returns the new key."""
        with self._lock:
            try:
                key = self._next_key
                self._write_atomic(self._path(key), payload)
                self._next_key += 1
                keys = self._keys()
                excess = keys[: max(0, len(keys) - self.max_reports)]
                for old in excess:
                    self._path(old).unlink(missing_ok=True)
                if excess:
                    self._dropped += len(excess)
                    self._store_dropped()
                    log.warning("spool full: dropped %d oldest report(s)", len(excess))
                return key
            except OSError as exc:
                raise SpoolError(f"cannot write to spool {self.directory}: {exc}") from exc

    def pending(self) -> Iterator[tuple[int, bytes]]:
        """Stored reports, oldest first (a snapshot of the keys at call time)."""
        with self._lock:
            keys = self._keys()
        for key in keys:
            try:
                yield key, self._path(key).read_bytes()
            except FileNotFoundError:
                continue  # dropped by a concurrent append

    def ack(self, key: int) -> None:
        """Forget a delivered report."""
        with self._lock:
            self._path(key).unlink(missing_ok=True)

    def take_dropped(self) -> int:
        """How many reports were dropped since the last call (resets the count)."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
            if dropped:
                self._store_dropped()
            return dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys())
