"""Many paho MQTT clients driven from one thread: a selector over their sockets.

paho's own ``loop_start`` costs a thread per client; a simulator holding thousands of device
connections uses paho's external-loop API instead (``loop_read`` / ``loop_write`` /
``loop_misc``). Everything a pumped client does — connect, publish, callbacks — happens on the
pump's thread, so paho's state is never shared between threads. Work from other threads comes
in through :meth:`MqttPump.call_soon` (a bounded queue).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0  # keepalive pings, timeouts
RECONNECT_AFTER_S = 5.0
MAX_CALLS = 100_000  # queued calls from other threads


class MqttPump:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._clients: list[mqtt.Client] = []
        self._registered: dict[mqtt.Client, int] = {}
        self._down_since: dict[mqtt.Client, float] = {}
        self._calls: queue.Queue[Callable[[], None]] = queue.Queue(MAX_CALLS)
        self._last_misc = 0.0
        self.reconnects = 0

    def add(self, client: mqtt.Client, host: str, port: int, keepalive_s: int = 60) -> None:
        """Connect ``client`` (blocking TCP connect; CONNACK arrives through the pump)."""
        client.connect(host, port, keepalive_s)
        self._clients.append(client)
        self._register(client)

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the pump's thread (e.g. a publish after a gRPC call finished)."""
        self._calls.put_nowait(call)

    def run_once(self, timeout_s: float) -> None:
        for key, _ in self._selector.select(timeout_s):
            client = key.data
            rc = client.loop_read()
            sock = client.socket()
            while rc == mqtt.MQTT_ERR_SUCCESS and sock is not None and _pending(sock):
                rc = client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost(client)
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            call()
        for client in self._registered:
            if client.want_write() and client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                self._down_since.setdefault(client, time.monotonic())
        now = time.monotonic()
        if now - self._last_misc >= MISC_INTERVAL_S:
            self._last_misc = now
            self._misc(now)

    def close(self) -> None:
        for client in self._clients:
            if client in self._registered:
                client.disconnect()
                client.loop_write()
        self._selector.close()

    @property
    def connected(self) -> int:
        return sum(1 for c in self._registered if c.is_connected())

    # -- internals ---------------------------------------------------------------------------

    def _register(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is None:
            self._down_since.setdefault(client, time.monotonic())
            return
        self._selector.register(sock, selectors.EVENT_READ, client)
        self._registered[client] = sock.fileno()
        self._down_since.pop(client, None)

    def _lost(self, client: mqtt.Client) -> None:
        if client in self._registered:
            fd = self._registered.pop(client)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)
        self._down_since.setdefault(client, time.monotonic())

    def _misc(self, now: float) -> None:
        for client in list(self._registered):
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS or client.socket() is None:
                self._lost(client)
        for client, since in list(self._down_since.items()):
            if client in self._registered:
                self._lost(client)  # its socket closed under us
                continue
            if now - since < RECONNECT_AFTER_S:
                continue
            try:
                client.reconnect()
            except OSError as exc:
                log.info("mqtt reconnect failed: %s", exc)
                self._down_since[client] = now
                continue
            self.reconnects += 1
            self._register(client)


def _pending(sock: object) -> int:
    """Bytes TLS has already decrypted (select does not see them)."""
    pending = getattr(sock, "pending", None)
    return int(pending()) if callable(pending) else 0
