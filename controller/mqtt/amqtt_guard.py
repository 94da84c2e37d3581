"""amqtt's broker made safe enough for a loopback fallback: the hooks of
:mod:`controller.mqtt.broker`.

Each hook overrides a private method of amqtt 0.12's ``Broker`` (there are no public ones): the
CONNECT is authenticated before amqtt looks up its session, a socket without CONNECT is dropped
after a deadline, a packet over the size limit ends the connection, retained messages follow the
receive rule, and revoked sessions can be dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from amqtt.adapters import ReaderAdapter
from amqtt.broker import Broker
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.session import Session

from controller.mqtt import acl
from controller.mqtt.credentials import verify_password

log = logging.getLogger(__name__)

PasswordHashLookup = Callable[[str], "str | None"]


def connect_allowed(
    lookup: PasswordHashLookup | None,
    *,
    username: str | None,
    password: str | None,
    client_id: str | None,
    will_topic: str | None,
) -> bool:
    """A known user with the right password, a device on its own client id, an allowed will."""
    if not username or lookup is None:
        return False
    try:
        hashed = lookup(username)
    except Exception:  # a failing store refuses the client, it does not crash the broker
        log.exception("password lookup failed user=%s", username)
        return False
    if hashed is None or not verify_password(password or "", hashed):
        log.info("mqtt connect refused user=%s client=%s", username[:200], (client_id or "")[:200])
        return False
    if acl.is_device_username(username) and client_id != username:
        # one session per device: another device must not take over this one's client id
        log.info("mqtt connect refused user=%s: client id must equal device id", username)
        return False
    if will_topic is not None and not acl.may_publish(username, will_topic):
        log.info("mqtt connect refused user=%s: will topic not allowed", username)
        return False
    return True


class GuardedBroker(Broker):
    """amqtt's broker with a CONNECT deadline and the receive rule on retained messages.

    Both hooks override private amqtt methods (0.12): there is no public way to do either."""

    connect_timeout_s: float = 10.0
    lookup_password_hash: PasswordHashLookup | None = None
    max_packet_bytes: int = 256 * 1024

    async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
        bounded = _BoundedReader(reader, self.max_packet_bytes)
        await super()._client_connected(listener_name, bounded, writer)

    async def _initialize_client_session(self, reader: Any, writer: Any, *args: Any) -> Any:
        """Read the CONNECT and authenticate it *before* amqtt looks up its session (which it
        deletes or takes over); a refused CONNECT is answered and closed without touching any
        session. An accepted one is replayed to amqtt, which then goes its usual way."""
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                connect = await ConnectPacket.from_stream(reader)
                if not self._pre_authenticated(connect):
                    await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                    await writer.close()
                    raise AMQTTError("CONNECT refused before its session was looked up")
                replay = _ReplayReader(bytes(connect.to_bytes()), reader)
                return await super()._initialize_client_session(replay, writer, *args)
        except TimeoutError:
            log.info("mqtt connection closed: no CONNECT within %.0fs", self.connect_timeout_s)
            await writer.close()
            raise AMQTTError("no CONNECT in time") from None
        except (NoDataError, MQTTError, AMQTTError):
            raise
        except Exception as exc:  # a malformed CONNECT
            await writer.close()
            raise AMQTTError(f"unreadable CONNECT: {exc}") from exc

    def _pre_authenticated(self, connect: ConnectPacket) -> bool:
        header, payload = connect.variable_header, connect.payload
        if header is None or payload is None:
            return False
        return connect_allowed(
            self.lookup_password_hash,
            username=connect.username,
            password=connect.password,
            client_id=payload.client_id,
            will_topic=payload.will_topic if header.will_flag else None,
        )

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


class _PacketTooLarge(Exception):
    """Not an amqtt error on purpose: amqtt's reader loop skips those and reads on (the
    payload's bytes as packets); any other exception ends the connection."""


class _BoundedReader(ReaderAdapter):
    """Ends the connection at a read longer than ``limit``: amqtt reads a packet's payload in
    one read of its announced length, so this refuses packets larger than the limit before
    their bytes are buffered."""

    def __init__(self, inner: ReaderAdapter, limit: int) -> None:
        self._inner, self._limit = inner, limit

    async def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._limit:
            log.info("mqtt connection closed: packet over %d bytes", self._limit)
            raise _PacketTooLarge(f"packet over {self._limit} bytes")
        return await self._inner.read(n)

    def feed_eof(self) -> None:
        self._inner.feed_eof()


class _ReplayReader(ReaderAdapter):
    """Gives back bytes already read, then reads on from the connection."""

    def __init__(self, first: bytes, rest: ReaderAdapter) -> None:
        self._first, self._rest = first, rest

    async def read(self, n: int = -1) -> bytes:
        if not self._first:
            return await self._rest.read(n)
        if n < 0:
            data, self._first = self._first + await self._rest.read(n), b""
        else:
            data, self._first = self._first[:n], self._first[n:]
        return data

    def feed_eof(self) -> None:
        self._rest.feed_eof()
