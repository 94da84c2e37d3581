"""A Mosquitto the controller starts, supervises and stops: the default MQTT broker.

:class:`MosquittoBroker` writes ``mosquitto.conf`` (:mod:`controller.mqtt.mosquitto_conf`),
``passwd`` and ``acl`` (:func:`controller.mqtt.credentials.write_mosquitto_auth`) into its
directory, starts ``mosquitto -c``, waits until both listeners accept connections and restarts
the process with backoff whenever it dies. Its log (stderr, one pipe) is drained into this
module's logger.

Revocation: :meth:`MosquittoBroker.credentials_changed` rewrites ``passwd`` and sends SIGHUP.
Mosquitto 2.0 re-checks every connected client against the reloaded password file and
disconnects the ones that no longer match, so a revoked device's open session ends at once
(tests/integration/test_mosquitto_supervised.py proves it with a real client).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from controller.mqtt.credentials import write_mosquitto_auth
from controller.mqtt.errors import BrokerError
from controller.mqtt.mosquitto_conf import (
    BrokerLimits,
    MosquittoLayout,
    find_mosquitto,
    mosquitto_conf_text,
)

log = logging.getLogger(__name__)
broker_log = logging.getLogger(__name__ + ".broker")  # Mosquitto's own log lines

Credentials = Callable[[], Iterable[tuple[str, str]]]  # (device_id, $7$ hash) of allowed devices

_PORT_ATTEMPTS = 5  # port 0: free ports picked and retried when another process takes one first
_RESTART_MIN_S, _RESTART_MAX_S = 0.5, 30.0
_STABLE_S = 30.0  # a process that ran this long resets the restart backoff
_LOG_TAIL = 20  # last log lines kept to say why a process died
_NOTABLE = ("not authorised", "oversize", "exceeded", "Reloading", "Saving")  # logged at INFO


class MosquittoBroker:
    """Start with :meth:`start`, connect devices to :attr:`port`, the ingest to
    :attr:`ingest_url`, call :meth:`credentials_changed` when the allowed devices change,
    end with :meth:`stop`."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str,
        port: int,
        controller_password: str,
        credentials: Credentials,
        binary: Path | None = None,
        limits: BrokerLimits = BrokerLimits(),
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise BrokerError("mosquitto not found (install mosquitto or pass its path)")
        self._binary = found
        self._directory = Path(directory)
        self.host = host
        self._requested_port = port
        self._controller_password = controller_password
        self._credentials = credentials
        self._limits = limits
        self._layout: MosquittoLayout | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready: subprocess.Popen[bytes] | None = None  # the process once it accepts
        self._reload_when_ready = False
        self._lock = threading.RLock()  # guards _proc and the auth files
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._log_tail: deque[str] = deque(maxlen=_LOG_TAIL)
        self.restarts = 0

    # -- the broker surface -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The devices' port (the real one when constructed with port 0)."""
        if self._layout is None:
            raise BrokerError("broker is not running")
        return self._layout.port

    @property
    def controller_port(self) -> int:
        if self._layout is None:
            raise BrokerError("broker is not running")
        return self._layout.controller_port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ingest_url(self) -> str:
        """Where the controller's own ingest connects (loopback, its own listener)."""
        return f"mqtt://127.0.0.1:{self.controller_port}"

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        if self._supervisor is not None:
            raise BrokerError("broker already started")
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _end_stale_process(self._directory)
        self._stopping.clear()
        self._start_first(timeout)
        self._supervisor = threading.Thread(
            target=self._supervise, name="mosquitto-supervisor", daemon=True
        )
        self._supervisor.start()
        log.info(
            "mosquitto %s listening on %s (ingest %s)", self._binary, self.url, self.ingest_url
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file and exits), SIGKILL after ``timeout``."""
        self._stopping.set()
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, timeout)
        if self._supervisor is not None:
            self._supervisor.join(timeout)
            self._supervisor = None
        if proc is not None:
            log.info("mosquitto stopped")

    def credentials_changed(self) -> None:
        """Rewrite passwd/acl from ``credentials()`` and reload: clients no longer listed are
        disconnected by Mosquitto and refused from then on."""
        with self._lock:
            self._write_auth()
            if self._proc is None or self._proc.poll() is not None:
                return  # the next process reads the new files
            if self._ready is not self._proc:
                # still starting (its SIGHUP handler may not be set yet, and it may have read
                # the old files): reload once it accepts connections
                self._reload_when_ready = True
                return
            self._proc.send_signal(signal.SIGHUP)
            log.info("mosquitto reloading credentials")

    # -- starting -----------------------------------------------------------------------------

    def _start_first(self, timeout: float) -> None:
        """Choose the ports (free ones for port 0, retried when taken meanwhile) and start."""
        for attempt in range(_PORT_ATTEMPTS):
            port = self._requested_port or _free_port(self.host)
            layout = MosquittoLayout(
                host=self.host,
                port=port,
                controller_port=_free_port("127.0.0.1"),
                directory=self._directory,
                run_as_root=os.geteuid() == 0,
            )
            try:
                self._launch(layout, timeout)
                return
            except _AddressInUse:
                log.info("mosquitto port taken meanwhile, retrying (%d)", attempt + 1)
        where = f"{self.host}:{self._requested_port}" if self._requested_port else "a free port"
        raise BrokerError(
            f"MQTT broker (mosquitto) cannot listen on {where}: Address already in use"
        )

    def _launch(self, layout: MosquittoLayout, timeout: float) -> None:
        """Write the files, start one process and wait until both listeners accept."""
        with self._lock:
            if self._stopping.is_set():
                raise BrokerError("broker is stopping")
            self._layout = layout
            layout.persistence_dir.mkdir(exist_ok=True, mode=0o700)
            layout.conf_file.write_text(mosquitto_conf_text(layout, self._limits))
            self._write_auth()
            self._log_tail.clear()
            proc = subprocess.Popen(
                [str(self._binary), "-c", str(layout.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the controller, which stops it
            )
            self._proc = proc
        assert proc.stdout is not None
        drain = threading.Thread(
            target=self._drain, args=(proc.stdout,), name="mosquitto-log", daemon=True
        )
        drain.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _accepts(layout.host, layout.port) and _accepts("127.0.0.1", layout.controller_port):
                with self._lock:
                    self._ready = proc
                    if self._reload_when_ready:
                        self._reload_when_ready = False
                        proc.send_signal(signal.SIGHUP)
                return
            time.sleep(0.05)
        if proc.poll() is None:
            _terminate(proc, 2.0)
            with self._lock:
                if self._proc is proc:
                    self._proc = None
            raise BrokerError(f"mosquitto did not accept connections within {timeout}s")
        proc.wait()
        with self._lock:
            if self._proc is proc:
                self._proc = None
        drain.join(2.0)  # its last lines say why
        tail = " | ".join(self._log_tail)
        if "Address already in use" in tail:
            raise _AddressInUse("address already in use")
        raise BrokerError(f"mosquitto exited with code {proc.returncode}: {tail or 'no output'}")

    def _write_auth(self) -> None:
        write_mosquitto_auth(self._directory, self._controller_password, self._credentials())

    # -- supervision --------------------------------------------------------------------------

    def _supervise(self) -> None:
        delay = _RESTART_MIN_S
        while not self._stopping.is_set():
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > _STABLE_S:
                delay = _RESTART_MIN_S
            log.error(
                "mosquitto died (%s): %s; restarting in %.1fs",
                f"killed by signal {-code}" if code < 0 else f"exit code {code}",
                " | ".join(self._log_tail) or "no output",
                delay,
            )
            while not self._stopping.wait(delay):
                assert self._layout is not None
                try:
                    self._launch(self._layout, timeout=10.0)
                except (BrokerError, OSError) as exc:
                    delay = min(delay * 2, _RESTART_MAX_S)
                    log.error("mosquitto restart failed: %s; next try in %.1fs", exc, delay)
                    continue
                self.restarts += 1
                log.warning("mosquitto restarted (%d restarts so far)", self.restarts)
                delay = min(delay * 2, _RESTART_MAX_S)
                break

    def _drain(self, stream: IO[bytes]) -> None:
        """Mosquitto's log lines into our logger (errors as errors, refusals at INFO, the rest at
        DEBUG) and the bounded tail."""
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()[:500]
            if not line:
                continue
            self._log_tail.append(line)
            if line.startswith("Error"):
                broker_log.error("%s", line)
            elif "should not be run as root" in line:
                broker_log.debug("%s", line)  # deliberate: the controller itself runs as root
            elif line.startswith("Warning"):
                broker_log.warning("%s", line)
            elif any(word in line for word in _NOTABLE):
                broker_log.info("%s", line)
            else:  # every connect and disconnect: too many for INFO in a fleet
                broker_log.debug("%s", line)
        stream.close()


class _AddressInUse(BrokerError):
    """One of the chosen ports was taken between choosing it and Mosquitto binding it."""


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    probe = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        socket.create_connection((probe, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            log.warning("mosquitto did not stop within %.1fs of SIGTERM, killing it", timeout)
            proc.kill()
    proc.wait(timeout)


def _end_stale_process(directory: Path) -> None:
    """A controller that was killed leaves its Mosquitto running on the same ports: end it,
    but only if the pid file names a mosquitto started with this directory's config."""
    pid_file = directory / "mosquitto.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(directory / "mosquitto.conf").encode() not in cmdline:
        return
    log.warning("ending mosquitto pid=%d left by a previous controller", pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
