"""The MQTT connection both sides open the same way: URL parsing and a configured paho client.

paho-mqtt is installed with the agent and controller extras (not the base install), so it is
imported when a client is made.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from edgefleet.errors import InvalidInput

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (default ports 1883 and 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise InvalidInput(f"broker url must be mqtt://host:port or mqtts://host:port, not {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise InvalidInput(f"bad port in broker url {url!r}") from exc
    return BrokerAddress(parts.hostname, port, tls)


def new_client(
    client_id: str,
    username: str,
    password: str,
    *,
    tls: bool,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    persistent_session: bool = False,
) -> mqtt.Client:
    """A paho client (callback API v2, MQTT 3.1.1) with credentials and TLS.

    A persistent session (clean_session=False) makes the broker keep the client's
    subscriptions and queue QoS 1 messages for it while it is away."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=not persistent_session,
    )
    client.username_pw_set(username, password)
    if tls:
        client.tls_set(
            ca_certs=ca_file,
            certfile=cert_file,
            keyfile=key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client
