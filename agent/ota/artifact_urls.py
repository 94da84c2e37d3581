"""Artifact bytes straight from the store over a presigned URL the controller hands out
(``GetArtifactUrl``), so they bypass the controller; its gRPC stream stays the fallback.

``UrlDownloader.fetch(url, target, dest)`` GETs the URL (stdlib ``urllib``: a timeout on
every read, no proxies from the environment, no redirects) into a staging file, resuming with
``Range`` after a break, never writing past the target's signed length, and checks exactly
that length and sha256 (both from signed TUF metadata, never from the response) before it
returns. Anything else raises ``ArtifactUrlFailed`` and leaves no staging file behind. TLS
trust for the URL's host: the system CAs, or only ``ca_file`` (a MinIO with a private CA).
"""

from __future__ import annotations

import http.client
import logging
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from agent.ota.errors import ArtifactUrlFailed
from agent.ota.machine import TargetInfo
from edgefleet.errors import VerificationError
from edgefleet.updates import StreamDigest

log = logging.getLogger(__name__)

BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class UrlSettings:
    timeout_s: float = 30.0  # connect, and each read
    attempts: int = 3  # GETs per download; each after the first resumes with Range
    ca_file: Path | None = None  # trust only this CA for the URL's host; None = system CAs


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx becomes an HTTPError: a presigned GET answers itself


class UrlDownloader:
    def __init__(self, settings: UrlSettings | None = None) -> None:
        self.settings = s = settings or UrlSettings()
        try:
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ArtifactUrlFailed(f"artifact URL CA file {s.ca_file}: {exc}") from exc
        self._open = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # library code never reads the environment
            urllib.request.HTTPSHandler(context=context),
            _NoRedirects(),
        ).open

    def fetch(
        self, url: str, target: TargetInfo, dest: Path, renew: Callable[[], str] | None = None
    ) -> Path:
        """``dest`` holding exactly the signed bytes of ``target``; raises ArtifactUrlFailed.

        ``renew()`` gives a fresh URL for each resume (the first may have expired meanwhile:
        S3 checks a presigned URL's expiry when a request starts)."""
        url = _checked(url)
        digest = StreamDigest(target.length, target.sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with dest.open("wb") as out:
                self._download(url, target, digest, out, renew)
            digest.finish()  # ArtifactTruncated / ArtifactMismatch
        except VerificationError as exc:
            dest.unlink(missing_ok=True)
            raise ArtifactUrlFailed(f"bytes from the URL refused: {exc}") from exc
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest

    def _download(
        self,
        url: str,
        t: TargetInfo,
        digest: StreamDigest,
        out: BinaryIO,
        renew: Callable[[], str] | None,
    ) -> None:
        error = ""
        for attempt in range(max(1, self.settings.attempts)):
            start = digest.received
            if start >= t.length:
                return
            if attempt:
                log.info("artifact %s: resuming the URL download at byte %d", t.sha256, start)
                if renew is not None:
                    url = _checked(renew())
            try:
                self._get(url, t, digest, out, start)
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
                error = _describe(exc)
                if isinstance(exc, urllib.error.HTTPError) or digest.received == start:
                    break  # refused, or no progress: no point in resuming
                continue
            return
        raise ArtifactUrlFailed(f"artifact URL: {error} at byte {digest.received}")

    def _get(
        self, url: str, t: TargetInfo, digest: StreamDigest, out: BinaryIO, start: int
    ) -> None:
        headers = {"Range": f"bytes={start}-"} if start else {}
        request = urllib.request.Request(url, headers=headers)
        with self._open(request, timeout=self.settings.timeout_s) as response:
            _check_headers(response, t, start)
            while digest.received < t.length:
                block = response.read(min(BLOCK, t.length - digest.received + 1))
                if not block:  # the body ended early: a break like any other
                    raise http.client.IncompleteRead(b"", t.length - digest.received)
                digest.update(block)  # ArtifactTooLong past the signed length, nothing hashed
                out.write(block)
            if response.headers.get("Content-Length") is None and (extra := response.read(1)):
                digest.update(extra)  # a body without a length that goes on: ArtifactTooLong


def _checked(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ArtifactUrlFailed(f"artifact URL scheme {scheme!r} refused (http/https only)")
    return url


def _check_headers(response: http.client.HTTPResponse, t: TargetInfo, start: int) -> None:
    status = response.status
    if start and status == 206:
        m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != start:
            raise ArtifactUrlFailed(f"artifact URL answered another range than bytes={start}-")
    elif status != 200 or start:
        raise ArtifactUrlFailed(f"artifact URL answered HTTP {status} to a GET from {start}")
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != t.length - start:
        raise ArtifactUrlFailed(
            f"artifact URL serves {int(length) + start} bytes, the signed length is {t.length}"
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    return f"{type(exc).__name__}: {exc}"
