"""Shared fixtures. Tests talk to real servers on loopback and never to the internet."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def repo_root() -> Path:
    return REPO


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll until ``predicate()`` is truthy; False when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


class TcpForwarder:
    """A TCP forwarder on loopback (port 0) to ``target_port``: closes the connections
    numbered in ``drop`` (0 = the first accepted), and can be cut (every open connection shut,
    new ones closed at once: the target unreachable) and restored. ``source_host`` (another
    loopback address, e.g. 127.0.0.2) is the address the target sees the calls come from."""

    def __init__(self, target_port: int, drop: Collection[int] = (), source_host: str = "") -> None:
        self.target_port, self.drop, self.source_host = target_port, drop, source_host
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            n, self.accepted = self.accepted, self.accepted + 1
            if n in self.drop or not self._open.is_set():
                conn.close()
                continue
            upstream = socket.create_connection(
                ("127.0.0.1", self.target_port),
                timeout=5,
                source_address=(self.source_host, 0) if self.source_host else None,
            )
            with self._lock:
                self._conns += [conn, upstream]
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError), a, b:
            while self._open.is_set() and not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._conns.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()
