"""An embedded MQTT broker (amqtt) for the zero-setup controller, with EdgeFleet's auth and ACL.

The broker runs on its own asyncio loop in its own thread. Authentication asks
``lookup_password_hash(username)`` on every CONNECT (so a revoked device is refused at its next
connect) and verifies the ``$7$`` hash; topic access follows :mod:`controller.mqtt.acl`, the same
rules the Mosquitto files carry. Passwords are never logged.

``lookup_password_hash`` runs on the broker's loop: keep it quick (a dict lookup or one
indexed query). It must also answer for the controller's own user
(:data:`controller.mqtt.acl.CONTROLLER_USERNAME`).

This broker is the fallback when Mosquitto is missing, and it only listens on loopback. What it
closes: a socket that sends no CONNECT is dropped after ``connect_timeout_s``; retained messages
go only to clients the receive rule allows; :meth:`EmbeddedBroker.credentials_changed` drops
open sessions whose credentials no longer verify. What stays open (amqtt looks a CONNECT's
session up, and takes it over, before it authenticates it): a local process can end another
client's session by connecting with its client id. Mosquitto has none of this.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from controller.mqtt import acl
from controller.mqtt.credentials import verify_password
from controller.mqtt.errors import BrokerError
from controller.mqtt.hosts import is_loopback
from edgefleet.errors import Unavailable

__all__ = ["BrokerError", "EmbeddedBroker"]

log = logging.getLogger(__name__)

PasswordHashLookup = Callable[[str], "str | None"]


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
        username = session.username
        lookup = self.config.lookup_password_hash
        if not username or lookup is None:
            return False
        try:
            hashed = lookup(username)
        except Exception:  # a failing store refuses the client, it does not crash the broker
            log.exception("password lookup failed user=%s", username)
            return False
        if hashed is None or not verify_password(session.password or "", hashed):
            log.info("mqtt connect refused user=%s client=%s", username, session.client_id)
            return False
        if acl.is_device_username(username) and session.client_id != username:
            # one session per device: another device must not take over this one's client id
            log.info("mqtt connect refused user=%s: client id must equal device id", username)
            return False
        if session.will_flag and not acl.may_publish(username, session.will_topic or ""):
            log.info("mqtt connect refused user=%s: will topic not allowed", username)
            return False
        return True


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


class _GuardedBroker(Broker):
    """amqtt's broker with a CONNECT deadline and the receive rule on retained messages.

    Both hooks override private amqtt methods (0.12): there is no public way to do either."""

    connect_timeout_s: float = 10.0

    async def _initialize_client_session(self, reader: Any, writer: Any, *args: Any) -> Any:
        try:
            return await asyncio.wait_for(
                super()._initialize_client_session(reader, writer, *args), self.connect_timeout_s
            )
        except TimeoutError:
            log.info("mqtt connection closed: no CONNECT within %.0fs", self.connect_timeout_s)
            await writer.close()
            raise AMQTTError("no CONNECT in time") from None

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = [
            handler.mqtt_publish(topic, kept.data, min(qos, kept.qos or qos), retain=True)
            for topic, kept in list(self._retained_messages.items())
            if self._matches(topic, topic_filter) and acl.may_receive(session.username, topic)
        ]
        if sends:
            await asyncio.gather(*sends)

    async def drop_sessions(self, still_allowed: Callable[[Session], bool]) -> list[str]:
        """Close the connection of every connected session ``still_allowed`` refuses; its will
        is published as for any lost connection."""
        dropped = []
        for client_id, (session, handler) in list(self._sessions.items()):
            if session.transitions.is_connected() and not still_allowed(session):
                dropped.append(client_id)
                if handler is not None and handler.writer is not None:
                    await handler.writer.close()
        return dropped


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
    ) -> None:
        if not is_loopback(host):
            raise BrokerError(
                f"the embedded MQTT broker only listens on loopback, not {host!r}: "
                "install mosquitto or use an external broker"
            )
        self._lookup = lookup_password_hash
        self._connect_timeout_s = connect_timeout_s
        self._broker: _GuardedBroker | None = None
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
        broker = _GuardedBroker(config, loop=asyncio.get_running_loop())
        broker.connect_timeout_s = self._connect_timeout_s
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
