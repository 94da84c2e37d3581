"""The alert webhook: a JSON POST per alert that fires or resolves, off the evaluation loop.

``AlertWebhook.notify`` only puts the message on a bounded queue (full: dropped, counted and
logged); one sender thread POSTs each with a timeout, retrying transient failures (network
errors, 5xx, 429) with ``edgefleet.retry`` (tenacity) before giving up on it (counted).

Body: ``{"status": "firing" | "resolved", "alert": Alert.to_dict(), "controller": name}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import tenacity

from controller.errors import ConfigError
from controller.monitoring.alerts import Alert
from edgefleet.retry import Backoff, last_error, retrying

log = logging.getLogger(__name__)


@dataclass
class WebhookStats:
    sent: int = 0
    failed: int = 0  # gave up after the retries
    dropped_queue_full: int = 0
    retries: int = 0


class _Transient(Exception):
    pass


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"alert webhook must be an http(s) URL, not {url!r}")
    return url


class AlertWebhook:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 4,
        backoff: Backoff | None = None,
        max_queued: int = 1000,
        name: str = "edgefleet",
    ) -> None:
        self.url = check_webhook_url(url)
        self._timeout = timeout_s
        self._attempts = attempts
        self._backoff = backoff or Backoff(0.5, 5.0, jitter=0.2)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queued)
        self._name = name
        self.stats = WebhookStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def notify(self, status: str, alert: Alert) -> None:
        """Queue one POST (never blocks)."""
        body = {"status": status, "alert": alert.to_dict(), "controller": self._name}
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.stats.dropped_queue_full += 1
            log.warning("alert webhook queue full: dropped %s of alert %d", status, alert.alert_id)

    def fired(self, alert: Alert) -> None:
        self.notify("firing", alert)

    def resolved(self, alert: Alert) -> None:
        self.notify("resolved", alert)

    def _run(self) -> None:
        while not self._stop.is_set():
            body = self._queue.get()
            if body is None:
                return
            try:
                for attempt in retrying(
                    what=f"alert webhook {self.url}",
                    transient=lambda e: isinstance(e, _Transient),
                    attempts=self._attempts,
                    backoff=self._backoff,
                    sleep=self._wait,
                ):
                    with attempt:
                        if attempt.retry_state.attempt_number > 1:
                            self.stats.retries += 1
                        self._post(body)
                self.stats.sent += 1
            except tenacity.RetryError as gave_up:
                self.stats.failed += 1
                log.warning("alert webhook gave up on alert %s: %s",
                            body["alert"]["alert_id"], last_error(gave_up))  # fmt: skip
            except Exception as exc:  # a refusal (4xx): not retried
                self.stats.failed += 1
                log.warning("alert webhook refused alert %s: %s", body["alert"]["alert_id"], exc)

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a stopping controller does not sit out a backoff

    def _post(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read(4096)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise _Transient(f"HTTP {exc.code}") from exc
            raise
        except (urllib.error.URLError, OSError) as exc:
            raise _Transient(str(exc)) from exc
