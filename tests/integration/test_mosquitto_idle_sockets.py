"""Measured: how long the supervised Mosquitto keeps a socket that never sends CONNECT.

Mosquitto 2.0 has no option for it; it closes such a socket after 1.5 x its built-in 60 s
keepalive (NEVER_CONNECT_CLOSE_S). Until then, max_connections bounds how many pile up
(test_mosquitto_supervised.py::test_sockets_that_never_connect_cannot_keep_the_ingest_out).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from controller.mqtt.mosquitto import MosquittoBroker
from controller.mqtt.mosquitto_conf import NEVER_CONNECT_CLOSE_S, find_mosquitto

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.slow,
    pytest.mark.timeout(NEVER_CONNECT_CLOSE_S + 60),
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]


def test_socket_that_never_sends_connect_is_closed_after_90s(tmp_path: Path) -> None:
    broker = MosquittoBroker(
        tmp_path / "m", host="127.0.0.1", port=0, controller_password="c", credentials=list
    )
    broker.start(10)
    try:
        idle = socket.create_connection(("127.0.0.1", broker.port))
        idle.settimeout(NEVER_CONNECT_CLOSE_S + 30)
        opened = time.monotonic()
        assert idle.recv(1) == b""
        held = time.monotonic() - opened
        idle.close()
        assert NEVER_CONNECT_CLOSE_S - 5 < held < NEVER_CONNECT_CLOSE_S + 10, (
            f"closed after {held:.0f}s"
        )
    finally:
        broker.stop(10)
