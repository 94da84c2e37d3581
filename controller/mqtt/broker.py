"""An embedded MQTT broker (amqtt) for the zero-setup controller, with EdgeFleet's auth and ACL.

The broker runs on its own asyncio loop in its own thread. Authentication asks
``lookup_password_hash(username)`` on every CONNECT (so a revoked device is refused at its next
connect) and verifies the ``$7$`` hash; topic access follows :mod:`controller.mqtt.acl`, the same
rules the Mosquitto files carry. Passwords are never logged.

``lookup_password_hash`` runs on the broker's loop: keep it quick (a dict lookup or one
indexed query). It must also answer for the controller's own user
(:data:`controller.mqtt.acl.CONTROLLER_USERNAME`).
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
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from controller.errors import ControllerError
from controller.mqtt import acl
from controller.mqtt.credentials import verify_password
from edgefleet.errors import Unavailable

log = logging.getLogger(__name__)

PasswordHashLookup = Callable[[str], "str | None"]


class BrokerError(ControllerError):
    """The embedded broker could not start or stop."""


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


class EmbeddedBroker:
    """Start with :meth:`start`, connect to :attr:`url`, end with :meth:`stop`."""

    def __init__(
        self,
        lookup_password_hash: PasswordHashLookup,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 10_000,
    ) -> None:
        self._lookup = lookup_password_hash
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
        broker = Broker(config, loop=asyncio.get_running_loop())
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
            await broker.shutdown()
