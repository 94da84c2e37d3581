"""A simulation: register N devices through the admin API, then a few worker processes
(``multiprocessing``, spawn) each enroll and drive their share (controller.simulate.worker).

    sim = Simulation(admin_channel, ca_pem, enroll_address, SimulationConfig(devices=1000))
    sim.start(); sim.wait_ready(); ...; result = sim.stop()
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509

from controller.simulate.errors import SimulationError
from controller.simulate.worker import Worker, WorkerSpec
from edgefleet.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)

MAX_DEVICES = 100_000
READY_TIMEOUT_S = 600.0
RESULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SimulationConfig:
    devices: int = 20
    processes: int = 2
    report_rate: float = 0.1  # telemetry reports per second per device (agent default: 1/10 s)
    heartbeat_interval_s: float = 5.0  # the agent's default (presence times out after 30 s)
    poll_interval_s: float = 30.0
    duration_s: float = 60.0  # after every device is enrolled and connected
    frames_per_report: int = 200
    profile: str = "generic-cpu"
    name_prefix: str = "sim"
    labels: Mapping[str, str] = field(default_factory=dict)
    threads_per_process: int = 8

    def check(self) -> None:
        if not 1 <= self.devices <= MAX_DEVICES:
            raise SimulationError(f"devices must be 1..{MAX_DEVICES}, not {self.devices}")
        if not 1 <= self.processes <= 64:
            raise SimulationError(f"processes must be 1..64, not {self.processes}")
        if self.report_rate < 0 or self.heartbeat_interval_s <= 0 or self.duration_s <= 0:
            raise SimulationError("rate must be >= 0, heartbeat interval and duration > 0")


@dataclass
class SimulationResult:
    devices: int
    enroll_s: float
    ran_s: float
    stats: Counter[str]

    def to_dict(self) -> dict[str, Any]:
        return {"devices": self.devices, "enroll_s": round(self.enroll_s, 3),
                "ran_s": round(self.ran_s, 3), **dict(sorted(self.stats.items()))}  # fmt: skip


def register_devices(channel: grpc.Channel, config: SimulationConfig) -> list[str]:
    """One RegisterDevice per device (the operator API); their enrollment tokens."""
    stub = admin_pb2_grpc.DeviceAdminServiceStub(channel)
    run = f"{config.name_prefix}-{int(time.time())}"
    labels = {"simulated": "true", **config.labels}

    def register(i: int) -> str:
        request = admin_pb2.RegisterDeviceRequest(
            name=f"{run}-{i:05d}", profile=config.profile, labels=labels
        )
        try:
            return str(stub.RegisterDevice(request, timeout=30).enrollment_token)
        except grpc.RpcError as exc:
            raise SimulationError(f"register: {exc.code().name}: {exc.details()}") from exc

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(register, range(config.devices)))


def _worker_main(spec: WorkerSpec, duration_s: float, stop: Any, events: Any) -> None:
    logging.basicConfig(level=logging.WARNING)
    worker = Worker(spec)
    try:
        worker.enroll_all()
        worker.connect_all()
        events.put(("ready", spec.seed, dict(worker.stats)))
        local_stop = threading.Event()

        def relay() -> None:  # the parent's stop (a multiprocessing Event) into this process
            stop.wait()
            local_stop.set()

        threading.Thread(target=relay, daemon=True).start()
        started = time.monotonic()
        worker.run(local_stop, started + duration_s)
        worker.stats["connected_at_end"] = worker.pump.connected
        worker.stats["mqtt_reconnects"] = worker.pump.reconnects
        worker.close()
        events.put(("done", spec.seed, dict(worker.stats)))
    except Exception as exc:  # reported to the parent, which says so
        events.put(("failed", spec.seed, f"{type(exc).__name__}: {exc}"))


class Simulation:
    def __init__(
        self, admin: grpc.Channel, ca_pem: bytes, enroll_address: str, config: SimulationConfig
    ) -> None:
        config.check()
        try:
            x509.load_pem_x509_certificate(ca_pem)
        except ValueError as exc:
            raise SimulationError(f"the controller CA is not a PEM certificate: {exc}") from exc
        self.config = config
        self._admin, self._ca_pem, self._address = admin, ca_pem, enroll_address
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._events: Any = self._context.Queue()
        self._processes: list[Any] = []
        self._stats: Counter[str] = Counter()
        self._t0 = 0.0
        self.enroll_s = 0.0
        self._ready_at = 0.0

    def start(self) -> None:
        cfg = self.config
        self._t0 = time.monotonic()
        tokens = register_devices(self._admin, cfg)
        n = min(cfg.processes, len(tokens))
        interval = 1.0 / cfg.report_rate if cfg.report_rate > 0 else 0.0
        for k in range(n):
            spec = WorkerSpec(
                tokens=tuple(tokens[k::n]), enroll_address=self._address, ca_pem=self._ca_pem,
                report_interval_s=interval, heartbeat_interval_s=cfg.heartbeat_interval_s,
                poll_interval_s=cfg.poll_interval_s, frames_per_report=cfg.frames_per_report,
                threads=cfg.threads_per_process, seed=k + 1,
            )  # fmt: skip
            process = self._context.Process(
                target=_worker_main, args=(spec, cfg.duration_s, self._stop, self._events),
                name=f"simulator-{k}", daemon=True,
            )  # fmt: skip
            process.start()
            self._processes.append(process)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Every process has enrolled and connected its devices (SimulationError if one failed)."""
        ready = 0
        while ready < len(self._processes):
            kind, _, payload = self._next_event(timeout_s)
            if kind == "ready":
                ready += 1
                self._stats.update({f"ready_{k}": v for k, v in payload.items()})
        self._ready_at = time.monotonic()
        self.enroll_s = self._ready_at - self._t0

    def stop(self) -> SimulationResult:
        """Ask every process to finish now, collect their counts."""
        self._stop.set()
        return self.join()

    def join(self) -> SimulationResult:
        """Wait for the processes to end on their own (``duration_s``) and collect their counts."""
        done = 0
        stats: Counter[str] = Counter()
        while done < len(self._processes):
            timeout = self.config.duration_s + RESULT_TIMEOUT_S
            kind, _, payload = self._next_event(timeout)
            if kind == "done":
                done += 1
                stats.update(payload)
        for process in self._processes:
            process.join(10)
        ran = time.monotonic() - self._ready_at
        return SimulationResult(self.config.devices, self.enroll_s, ran, stats)

    def terminate(self) -> None:
        """Stop every process at once (after a failure)."""
        self._stop.set()
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)

    def _next_event(self, timeout_s: float) -> tuple[str, int, Any]:
        try:
            kind, seed, payload = self._events.get(timeout=timeout_s)
        except queue.Empty:
            self.terminate()
            raise SimulationError(
                f"no word from the simulator processes in {timeout_s:.0f} s"
            ) from None
        if kind == "failed":
            self.terminate()
            raise SimulationError(f"simulator process {seed} failed: {payload}")
        return kind, seed, payload
