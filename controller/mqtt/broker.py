"""An embedded MQTT broker (amqtt) for the zero-setup controller, with EdgeFleet's auth and ACL.

The broker runs on its own asyncio loop in its own thread. Authentication asks
``lookup_password_hash(username)`` on every CONNECT (so a revoked device is refused at its next
connect) and verifies the ``$7$`` hash; topic access follows :mod:`controller.mqtt.acl`, the same
rules the Mosquitto files carry. Passwords are never logged.

``lookup_password_hash`` runs on the broker's loop: keep it quick (a dict lookup or one
indexed query). It must also answer for the controller's own user
(:data:`controller.mqtt.acl.CONTROLLER_USERNAME`).

This broker is the fallback when Mosquitto is missing, and it only listens on loopback. On top of
amqtt (by overriding private methods of its 0.12 broker: there are no public hooks) it reads and
authenticates a CONNECT before amqtt looks up (and deletes or takes over) the session of its client
id, so an unauthenticated CONNECT touches no session; drops a socket that sends no CONNECT within
``connect_timeout_s``; ends a connection that sends a packet over ``max_packet_bytes`` before its
payload is buffered; sends retained messages only to clients the receive rule allows; and
:meth:`EmbeddedBroker.credentials_changed` drops open sessions whose credentials no longer verify.
What it does not have: Mosquitto's per-client queue bounds and a process of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from controller.mqtt import acl
from controller.mqtt.amqtt_guard import GuardedBroker, PasswordHashLookup, connect_allowed
from controller.mqtt.credentials import verify_password
from controller.mqtt.errors import BrokerError
from controller.mqtt.hosts import is_loopback
from edgefleet.errors import Unavailable

__all__ = ["BrokerError", "EmbeddedBroker"]

log = logging.getLogger(__name__)


class _NoStartupTraceback(logging.Filter):
    """amqtt logs its own startup failure with a traceback, then raises: the raise reaches
    :meth:`EmbeddedBroker.start`, which reports it in one line, so the log record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Broker startup failed"


def _startup_failure(error: BaseException) -> str:
    """The root cause of a failed start, e.g. ``address already in use``, in one line."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError):
            return os.strerror(cause.errno) if cause.errno else str(cause)
        cause = cause.__cause__ or cause.__context__
    return str(error)


class EdgeFleetAuthPlugin(BaseAuthPlugin):
    """CONNECT is accepted only for a known user with the right password whose will is allowed."""

    @dataclass
    class Config:
        lookup_password_hash: Any = None  # PasswordHashLookup; Any because dacite checks types

    async def authenticate(self, *, session: Session) -> bool | None:
        return connect_allowed(
            self.config.lookup_password_hash,
            username=session.username,
            password=session.password,
            client_id=session.client_id,
            will_topic=session.will_topic if session.will_flag else None,
        )


class EdgeFleetTopicPlugin(BaseTopicPlugin):
    """Publish, subscribe and receive follow :mod:`controller.mqtt.acl`."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        if session is None or not topic:
            return False
        username = session.username
        if action == Action.PUBLISH:
            allowed = acl.may_publish(username, topic)
        elif action == Action.SUBSCRIBE:
            allowed = acl.may_subscribe(username, topic)
        elif action == Action.RECEIVE:
            allowed = acl.may_receive(username, topic)
        else:
            allowed = False
        if not allowed and action != Action.RECEIVE:
            log.info("mqtt %s denied user=%s topic=%s", action, username, topic[:200])
        return allowed


class EmbeddedBroker:
    """Start with :meth:`start`, connect to :attr:`url`, end with :meth:`stop`.

    Only loopback addresses can be bound (BrokerError otherwise): off this host, run Mosquitto.
    """

    def __init__(
        self,
        lookup_password_hash: PasswordHashLookup,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 10_000,
        connect_timeout_s: float = 10.0,
        max_packet_bytes: int = 256 * 1024,
    ) -> None:
        if not is_loopback(host):
            raise BrokerError(
                f"the embedded MQTT broker only listens on loopback, not {host!r}: "
                "install mosquitto or use an external broker"
            )
        self._lookup = lookup_password_hash
        self._connect_timeout_s = connect_timeout_s
        self._max_packet_bytes = max_packet_bytes
        self._broker: GuardedBroker | None = None
        self.host = host
        self._requested_port = port
        self._max_connections = max_connections
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._port is None:
            raise BrokerError("broker is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ingest_url(self) -> str:
        """Where the controller's ingest connects (the same loopback listener)."""
        return self.url

    def credentials_changed(self, timeout: float = 10.0) -> list[str]:
        """Drop the open sessions whose user's password no longer verifies (revoked devices);
        new CONNECTs ask ``lookup_password_hash`` anyway. Returns the dropped client ids."""
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or loop.is_closed():
            return []
        future = asyncio.run_coroutine_threadsafe(broker.drop_sessions(self._still_allowed), loop)
        try:
            dropped = future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise Unavailable(f"embedded broker did not drop sessions within {timeout}s") from exc
        for client_id in dropped:
            log.info("mqtt session dropped: credentials revoked client=%s", client_id)
        return dropped

    def _still_allowed(self, session: Session) -> bool:
        try:
            hashed = self._lookup(session.username or "")
        except Exception:
            log.exception("password lookup failed user=%s", session.username)
            return True  # a store hiccup must not disconnect the whole fleet
        return hashed is not None and verify_password(session.password or "", hashed)

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise BrokerError("broker already started")
        self._thread = threading.Thread(target=self._run, name="mqtt-embedded-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise Unavailable(f"embedded mqtt broker did not start within {timeout}s")
        if self._start_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise BrokerError(
                f"embedded MQTT broker failed to start on {self.host}:{self._requested_port}: "
                f"{_startup_failure(self._start_error)}"
            ) from self._start_error
        log.info("embedded mqtt broker listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop_requested
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise Unavailable(f"embedded mqtt broker did not stop within {timeout}s")
        self._thread = None
        self._port = None
        log.info("embedded mqtt broker stopped")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to start(), never lost in the thread
            self._start_error = self._start_error or e
            self._started.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop_requested = asyncio.Event()
        config = {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.host}:{self._requested_port}",
                    "max_connections": self._max_connections,
                }
            },
            "plugins": {
                f"{__name__}.EdgeFleetAuthPlugin": {"lookup_password_hash": self._lookup},
                f"{__name__}.EdgeFleetTopicPlugin": {},
            },
        }
        broker = GuardedBroker(config, loop=asyncio.get_running_loop())
        broker.connect_timeout_s = self._connect_timeout_s
        broker.lookup_password_hash = self._lookup
        broker.max_packet_bytes = self._max_packet_bytes
        self._broker = broker
        amqtt_log, quiet = logging.getLogger("amqtt.broker"), _NoStartupTraceback()
        amqtt_log.addFilter(quiet)
        try:
            await broker.start()
        finally:
            amqtt_log.removeFilter(quiet)
        try:
            server = broker._servers["default"].instance  # amqtt exposes no bound-address API
            self._port = int(server.sockets[0].getsockname()[1])
            self._started.set()
            await self._stop_requested.wait()
        finally:
            self._broker = None
            await broker.shutdown()
