"""A uvicorn server for one ASGI app, in a thread of its own, with a clean stop.

The socket is bound before the thread starts, so a port in use fails ``start`` (as the gRPC
ports do) and the bound port is known at once (``port`` 0 = any free port).
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from controller.errors import ConfigError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path


class HttpServer:
    def __init__(self, app: ASGIApp, host: str, port: int, tls: TlsFiles | None = None) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._tls = tls
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    def start(self) -> int:
        """Bind, serve in a thread, wait until it accepts; the bound port."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by accepted sockets: without it a kept-alive connection waits ~40 ms for a
        # delayed ACK before the end of each response (Nagle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self._host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen for HTTP on {self._host}:{self._requested_port}: "
                f"{exc.strerror or exc} (pass another --http-port, or 0 for any free port)"
            ) from exc
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=5,
            limit_concurrency=64,  # beyond it: 503, not an unbounded pile of requests
            timeout_graceful_shutdown=2,
            ssl_certfile=str(self._tls.cert_file) if self._tls else None,
            ssl_keyfile=str(self._tls.key_file) if self._tls else None,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="http-server", daemon=True
        )
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(START_TIMEOUT_S / 0.01)):
            if server.started or not self._thread.is_alive():
                break
            waited.wait(0.01)
        if not server.started:
            self.stop()
            sock.close()
            raise ConfigError(f"the HTTP server on {self._host}:{self.port} did not start")
        log.info("HTTP (/metrics, dashboard) on %s://%s:%d", self.scheme, self._host, self.port)
        return self.port

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the HTTP server did not stop within %.0f s", timeout_s)
