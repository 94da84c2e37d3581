"""How devices fetched artifacts: bytes the controller streamed itself (DownloadArtifact) and
presigned URLs it handed out instead (GetArtifactUrl), so the bytes went store -> device."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class ArtifactTraffic:
    streamed_bytes: int = 0
    streams: int = 0
    urls_issued: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def streamed(self, size: int) -> None:
        with self._lock:
            self.streamed_bytes += size

    def stream_started(self) -> None:
        with self._lock:
            self.streams += 1

    def url_issued(self) -> None:
        with self._lock:
            self.urls_issued += 1
