"""The alert webhook against a real local HTTP server: transient failures are retried, a
refusal is not, a full queue drops (counted) instead of blocking the evaluation loop."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from controller.errors import ConfigError
from controller.monitoring.alerts import Alert
from controller.monitoring.webhook import AlertWebhook
from edgefleet.retry import Backoff
from tests.conftest import wait_until

ALERT = Alert(7, "drift", "dev-1", "dev-1", "warning", "cam-1: shifted", 1000, None,
              {"psi": 0.4}, {"psi": 0.4})  # fmt: skip


class Flaky(BaseHTTPRequestHandler):
    codes: ClassVar[list[int]] = []  # answered in order, then 204
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        code = type(self).codes.pop(0) if type(self).codes else 204
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Flaky.codes, Flaky.bodies = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/alerts"
    httpd.shutdown()
    httpd.server_close()


def test_transient_failures_are_retried_and_refusals_are_not(server: str) -> None:
    hook = AlertWebhook(server, timeout_s=2, attempts=3, backoff=Backoff(0.05, 0.05))
    hook.start()
    try:
        Flaky.codes = [503, 500]  # then 204
        hook.fired(ALERT)
        assert wait_until(lambda: hook.stats.sent == 1, 5)
        assert hook.stats.retries == 2 and len(Flaky.bodies) == 3
        assert Flaky.bodies[-1]["status"] == "firing"
        assert Flaky.bodies[-1]["alert"]["evidence"] == {"psi": 0.4}
        Flaky.codes = [400]
        hook.resolved(ALERT)
        assert wait_until(lambda: hook.stats.failed == 1, 5)
        assert len(Flaky.bodies) == 4  # not retried
    finally:
        hook.stop()


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    hook = AlertWebhook("http://127.0.0.1:9/never", max_queued=2)  # not started: nothing sent
    for _ in range(5):
        hook.fired(ALERT)
    assert hook.stats.dropped_queue_full == 3


def test_a_webhook_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError):
        AlertWebhook("ftp://example/hook")
