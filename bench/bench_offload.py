"""Offload serving benchmark on the Fashion-MNIST teacher, measured side by side in one run.

    .venv/bin/python bench/bench_offload.py [--devices 32|128] [--seconds 6] [--deadline-ms 250]

A real controller (controller.app.build_controller, in its own process, so the devices' CPU is
not counted as the server's) serves examples/fashion/cloud.onnx; ``--devices`` enrolled
devices, each in its own process, offload 28 x 28 frames from test.npz over mutual-TLS gRPC
with the agent's own client (GrpcOffloadClient: OffloadStream lanes, unary as fallback).

1. raw: ONNX Runtime on the same model, loaded by the server's loader with the server's thread
   settings, at batch sizes 1..32 on preprocessed frames (best batch), before and after the
   served runs (the higher one counts).
2. served, closed loop (each device one frame in flight): batched (the controller's default
   batching) and unbatched (batch 1), over streams; and batched over unary calls. frames/s,
   p50/p95/p99 end-to-end latency, server CPU per frame (psutil of the controller process).
3. overload: open loop at twice the frames/s the batched server sustained, each frame with the
   deadline, the batch queue sized to a quarter deadline of work, at most 2 frames in flight per
   device (as the agent, a frame beyond them keeps its local answer). Admitted frames' p99
   against the deadline; the excess answered RESOURCE_EXHAUSTED; silent timeouts (no status in
   time) = 0.
4. per-request costs of the path, in-process: encode, serialize, parse, decode (raw tensor
   vs PNG), preprocess, against one model call.
5. agent: Agent.infer on the edge model vs the raw runtime call, quiet and with a busy-loop
   process per core.

Each goal prints one line: ``goal <name>: <measured> (target <op> <value>) OK | MISSED``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fashion_workload import (  # noqa: E402
    EDGE_NAME,
    Workload,
    add_workload_arguments,
    interleaved_times,
)

CTX = mp.get_context("spawn")
RATIO_GOAL = 0.9
AGENT_GOAL = 1.05


def goal(name: str, measured: str, op: str, value: str, ok: bool) -> bool:
    print(f"goal {name}: {measured} (target {op} {value}) {'OK' if ok else 'MISSED'}", flush=True)
    return ok


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ------------------------------------------------------------------ the controller process


def controller_main(
    data_dir: str, spec: str, workers: int, conn: Any, cpus: set[int] | None = None
) -> None:
    import logging

    if cpus:  # before ONNX Runtime and gRPC start their threads
        os.sched_setaffinity(0, cpus)
    from controller.app import build_controller
    from controller.config import ControllerConfig

    logging.basicConfig(level=logging.WARNING)
    config = ControllerConfig(
        data_dir=Path(data_dir), grpc_host="127.0.0.1", grpc_port=0, device_port=0,
        mqtt_port=0, http_port=0, shutdown_grace_s=1.0, grpc_workers=workers,
        cloud_models=(spec,),
    )  # fmt: skip
    controller = build_controller(config)
    try:
        plans = [
            f"{m.plan.max_batch_size} x {m.plan.max_queue_delay_ms:g} ms ({m.plan.source}: "
            f"{m.plan.reason})"
            for m in controller.cloud_models.served().values()
        ]
        conn.send((controller.grpc_port, controller.device_port, controller.operator_token, plans))
        while conn.recv() == "stats":  # else: stop
            conn.send(
                [(m.queue_stats().batches, m.queue_stats().frames, m.queue_stats().max_batch_size)
                 for m in controller.cloud_models.served().values()]
            )  # fmt: skip
    finally:
        controller.stop()


class ControllerProcess:
    def __init__(
        self, data_dir: Path, spec: str, workers: int, cpus: set[int] | None = None
    ) -> None:
        self.data_dir = data_dir
        self._conn, child = CTX.Pipe()
        self.process = CTX.Process(
            target=controller_main, args=(str(data_dir), spec, workers, child, cpus), daemon=True
        )
        self.process.start()
        if not self._conn.poll(120):
            raise SystemExit("the controller did not start in 120 s")
        self.grpc_port, self.device_port, self.token, self.plans = self._conn.recv()

    def cpu_s(self) -> float:
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def serving_counts(self) -> tuple[int, int, int]:
        """The served model's model calls and frames so far, and its batch size now."""
        self._conn.send("stats")
        batches, frames, size = self._conn.recv()[0]
        return batches, frames, size

    def stop(self) -> None:
        self._conn.send("stop")
        self.process.join(30)


def enroll_devices(ctl: ControllerProcess, root: Path, count: int) -> list[Path]:
    from agent.enroll import enroll
    from agent.hardware import detect
    from controller.cli.client import Connection, open_channel
    from edgefleet.v1 import admin_pb2, admin_pb2_grpc

    ca = (ctl.data_dir / "pki" / "ca.pem").read_bytes()
    address = f"127.0.0.1:{ctl.grpc_port}"
    channel = open_channel(Connection(address, ctl.token, ca, 30.0))
    stub = admin_pb2_grpc.DeviceAdminServiceStub(channel)
    facts, dirs = detect(), []
    try:
        for i in range(count):
            request = admin_pb2.RegisterDeviceRequest(name=f"cam-{i:03d}", profile="auto")
            token = stub.RegisterDevice(request, timeout=30).enrollment_token
            enroll(root / f"cam-{i:03d}", address, token, facts, attempts=2)
            dirs.append(root / f"cam-{i:03d}")
    finally:
        channel.close()
    return dirs


# ------------------------------------------------------------------ the device processes


@dataclass
class RunSpec:
    address: str
    seconds: float
    deadline_s: float
    use_streams: bool = True
    rate: float = 0.0  # frames/s per device, open loop; 0 = closed loop, one in flight
    lanes: int = 1


@dataclass
class RunResult:
    latencies_ms: list[float] = field(default_factory=list)  # answered by the cloud model
    counts: dict[str, int] = field(default_factory=dict)
    expired_ms: list[float] = field(default_factory=list)  # answered DEADLINE_EXCEEDED
    serving: str = ""  # the served model's calls in the window (the controller's counts)

    def add(self, other: RunResult) -> None:
        self.latencies_ms += other.latencies_ms
        self.expired_ms += other.expired_ms
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v


def device_main(data_dir: str, frames_file: str, commands: Any, results: Any) -> None:
    creds_dir = Path(data_dir)
    with np.load(frames_file) as data:
        frames = data["x"][:64]
    rng = np.random.default_rng(sum(data_dir.encode()))
    while (spec := commands.get()) is not None:
        try:
            results.put(device_run(creds_dir, frames, spec, rng, commands, results))
        except Exception as exc:  # reported, never a hang of the parent
            results.put(RunResult(counts={f"bench error {type(exc).__name__}: {exc}": 1}))


def device_run(
    data_dir: Path, frames: np.ndarray, spec: RunSpec, rng: Any, commands: Any, results: Any
) -> RunResult:
    from agent.controller_client import device_channel
    from agent.identity import Credentials
    from agent.inference import GrpcOffloadClient, OffloadFailed, OffloadFrame

    channel = device_channel(spec.address, Credentials.load(data_dir), 8 << 20)
    client = GrpcOffloadClient(channel, spec.use_streams, max(1, spec.lanes))
    result = RunResult()
    lock = threading.Lock()

    def one(k: int, measured: bool) -> None:
        request = OffloadFrame(EDGE_NAME, "bench:1", f"f{k}", frames[k % 64], 0, 0.1)
        t = time.perf_counter()
        try:
            client.offload(request, spec.deadline_s)
            kind = "ok"
        except OffloadFailed as exc:
            kind = exc.kind if exc.answered else "silent"
            if kind == "error" and not result.counts.get("error"):
                print(f"offload error: {exc}", file=sys.stderr)
        ms = (time.perf_counter() - t) * 1000.0
        if not measured:
            return
        with lock:
            result.counts[kind] = result.counts.get(kind, 0) + 1
            if kind == "ok":
                result.latencies_ms.append(ms)
            elif kind == "deadline":
                result.expired_ms.append(ms)

    try:
        for k in range(3):  # TLS handshake, a lane open
            one(k, False)
        results.put("ready")
        start_at = commands.get()  # when every device is ready
        time.sleep(max(0.0, start_at - time.time()))
        end = time.perf_counter() + spec.seconds
        k = 0
        if spec.rate <= 0:
            while time.perf_counter() < end:
                one(k, True)
                k += 1
        else:  # as the agent does: beyond `lanes` frames in flight, a frame stays local
            slots = threading.BoundedSemaphore(spec.lanes)

            def offload_one(k: int) -> None:
                try:
                    one(k, True)
                finally:
                    slots.release()

            with ThreadPoolExecutor(spec.lanes) as pool:
                next_at = time.perf_counter() + rng.uniform(0, 1.0 / spec.rate)
                while next_at < end:
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    if slots.acquire(blocking=False):
                        pool.submit(offload_one, k)
                    else:
                        with lock:
                            result.counts["kept local"] = result.counts.get("kept local", 0) + 1
                    k += 1
                    next_at += rng.exponential(1.0 / spec.rate)
        result.counts["unary fallbacks"] = client.fallbacks
    finally:
        client.close()
    return result


class Devices:
    def __init__(self, dirs: list[Path], frames_file: Path) -> None:
        self.results = CTX.Queue()
        self.commands = [CTX.Queue() for _ in dirs]
        self.processes = [
            CTX.Process(
                target=device_main, args=(str(d), str(frames_file), q, self.results), daemon=True
            )
            for d, q in zip(dirs, self.commands, strict=True)
        ]
        for p in self.processes:
            p.start()

    def run(self, ctl: ControllerProcess, spec: RunSpec) -> tuple[RunResult, float, float]:
        """All devices run `spec`: the merged result, the controller's and the devices' CPU
        seconds in the measured window."""
        for q in self.commands:
            q.put(spec)
        for _ in self.processes:
            ready = self.results.get(timeout=120)
            if ready != "ready":  # a device failed before its run
                raise SystemExit(f"a device failed: {ready.counts}")
        start_at = time.time() + 0.5
        for q in self.commands:
            q.put(start_at)
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, dev0, counts0 = ctl.cpu_s(), self.cpu_s(), ctl.serving_counts()
        time.sleep(spec.seconds)
        cpu, dev, counts = ctl.cpu_s() - cpu0, self.cpu_s() - dev0, ctl.serving_counts()
        merged = RunResult()
        for _ in self.processes:
            merged.add(self.results.get(timeout=spec.seconds + 60))
        calls, frames = counts[0] - counts0[0], counts[1] - counts0[1]
        merged.serving = (
            f"{calls} model calls for {frames} frames (mean batch {frames / max(1, calls):.1f}), "
            f"batch size {counts0[2]} -> {counts[2]}"
        )
        return merged, cpu, dev

    def pin(self, cpus: set[int] | None) -> None:
        """Run the device processes on ``cpus`` (None: on every core)."""
        import psutil

        every = sorted(cpus or range(os.cpu_count() or 1))
        for p in self.processes:
            with contextlib.suppress(psutil.Error):
                for proc in [psutil.Process(p.pid), *psutil.Process(p.pid).children(True)]:
                    for thread in proc.threads():  # their gRPC threads too
                        with contextlib.suppress(OSError):
                            os.sched_setaffinity(thread.id, every)

    def cpu_s(self) -> float:
        import psutil

        total = 0.0
        for p in self.processes:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(p.pid).cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.processes:
            p.join(10)


# ------------------------------------------------------------------ measurements


class Raw:
    """The cloud model as the server loads it (same loader, same thread setting), run directly
    on preprocessed frames: frames/s at a batch size."""

    def __init__(self, workload: Workload, threads: int) -> None:
        from controller.services.offload import load_cloud_model

        self.model = load_cloud_model(
            workload.cloud_model, "raw", None, None, threads, workload.cloud_preprocess
        )
        frames = workload.split("test")[0][:64]
        self.tensors = np.concatenate([self.model.preprocess(f) for f in frames])
        self.cpu_ms_per_frame = 0.0
        self.path, self.threads, self.stock = workload.cloud_model, threads, None

    def rate(self, batch: int, seconds: float) -> float:
        session, name = self.model.session, self.model.input_name
        x = np.ascontiguousarray(np.resize(self.tensors, (batch, *self.tensors.shape[1:])))
        for _ in range(3):
            session.run(None, {name: x})
        n, t, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t < seconds:
            session.run(None, {name: x})
            n += batch
        self.cpu_ms_per_frame = (time.process_time() - cpu) * 1000.0 / max(1, n)
        return n / (time.perf_counter() - t)

    def best(self, seconds_each: float) -> tuple[int, dict[int, float]]:
        rates = {b: self.rate(b, seconds_each) for b in (1, 2, 4, 8, 16, 32)}
        return max(rates, key=lambda b: rates[b]), rates

    def stock_rate(self, batch: int, seconds: float) -> float:
        """The same batch on a session with ONNX Runtime's default options (its intra-op
        threads spinning), which the server's sessions turn off: raw is the faster of the two."""
        import onnxruntime as ort

        if self.stock is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            self.stock = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        served = self.model.session
        self.model.session = self.stock
        try:
            return self.rate(batch, seconds)
        finally:
            self.model.session = served


def describe(name: str, r: RunResult, cpu: tuple[float, float], seconds: float) -> float:
    fps = len(r.latencies_ms) / seconds
    lat, n = r.latencies_ms, max(1, len(r.latencies_ms))
    others = {k: v for k, v in sorted(r.counts.items()) if k != "ok" and v}
    print(
        f"    {name:31s} {fps:6.1f} frames/s  p50 {pct(lat, 50):5.1f}  p95 {pct(lat, 95):5.1f}  "
        f"p99 {pct(lat, 99):5.1f} ms  CPU/frame server {1000 * cpu[0] / n:5.2f} "
        f"devices {1000 * cpu[1] / n:5.2f} ms"
        + (f"\n{'':36s}not answered: {others}" if others else "")
        + (f"\n{'':36s}served: {r.serving}" if r.serving else ""),
        flush=True,
    )
    return fps


def path_costs(workload: Workload, repeat: int = 2000) -> None:
    from PIL import Image

    from agent.inference.offload import OffloadFrame, offload_request
    from controller.grpc.offload_servicer import decode_request
    from controller.services.offload import load_cloud_model
    from controller.serving.images import FrameLimits
    from edgefleet.v1 import inference_pb2

    model = load_cloud_model(workload.cloud_model, "p", None, None, 0, workload.cloud_preprocess)
    frame = workload.split("test")[0][0]
    limits = FrameLimits.for_input(model.input_size)
    request = OffloadFrame(EDGE_NAME, "v", "f", frame, 0, 0.1)
    wire = offload_request(request).SerializeToString()
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    png_wire = inference_pb2.OffloadRequest(
        model=EDGE_NAME, image=inference_pb2.EncodedImage(format="png", data=buf.getvalue())
    ).SerializeToString()
    parsed = inference_pb2.OffloadRequest.FromString(wire)
    parsed_png = inference_pb2.OffloadRequest.FromString(png_wire)
    tensor = model.preprocess(frame)

    def us(fn: Any) -> float:
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - t) / repeat * 1e6

    steps = [
        ("client: build + encode request", lambda: offload_request(request)),
        ("client: serialize", lambda: offload_request(request).SerializeToString()),
        ("server: parse request", lambda: inference_pb2.OffloadRequest.FromString(wire)),
        ("server: decode raw tensor (frombuffer)", lambda: decode_request(parsed, limits)),
        ("server: decode PNG of the same frame", lambda: decode_request(parsed_png, limits)),
        ("server: preprocess (28x28 -> 3x64x64)", lambda: model.preprocess(frame)),
    ]
    print(f"\n[4] per-request costs, in-process (median of {repeat} calls each, µs)")
    for name, fn in steps:
        print(f"    {name:40s} {us(fn):8.1f}")
    model_us = us(lambda: model.session.run(None, {model.input_name: tensor})) if repeat else 0
    print(f"    {'model: one batch-1 ORT call':40s} {model_us:8.1f}")
    print(f"    request bytes: raw tensor {len(wire)}, PNG {len(png_wire)}")


def busy_loop(stop: Any) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def agent_overhead(tmp: Path, workload: Workload, seconds: float) -> list[bool]:
    from fashion_workload import host_profile

    from agent.inference import Agent, FixedThreshold
    from agent.pack import pack_model
    from agent.runtime import ModelHolder, load_variant
    from agent.runtime.backends import OnnxRuntimeBackend
    from agent.telemetry import TelemetryAggregator

    threads = host_profile()[0].threads  # the agent's thread count on this host
    directory = tmp / "packed-edge"
    pre = workload.edge_preprocess
    pack_model(workload.edge_model, pre, directory, workload.labels_file, EDGE_NAME)
    loaded = load_variant(directory, threads)
    agent = Agent(ModelHolder(loaded), FixedThreshold(0.0), None, TelemetryAggregator("bench"))
    assert isinstance(loaded.backend, OnnxRuntimeBackend)
    raw, name = loaded.backend.session, loaded.backend.session.get_inputs()[0].name
    frames = workload.split("test")[0][:16]
    tensors = [loaded.preprocessor(f) for f in frames]
    print(f"\n[5] agent: Agent.infer vs raw InferenceSession.run, edge model, {threads} threads")
    oks = []
    for label in ("quiet", "busy"):
        stop = CTX.Event()
        hogs = [CTX.Process(target=busy_loop, args=(stop,)) for _ in range(os.cpu_count() or 1)]
        if label == "busy":
            for h in hogs:
                h.start()
            time.sleep(0.5)
        times = interleaved_times(
            {
                "raw": lambda i: raw.run(None, {name: tensors[i % 16]}),
                "agent": lambda i: agent.infer(frames[i % 16]),
                "frame": lambda i: loaded.infer_frame(frames[i % 16]),
            },
            seconds,
        )
        stop.set()
        for h in hogs:
            if h.pid is not None:
                h.join(5)
        raw_ms = times["raw"]
        r, a, f = (statistics.median(times[k]) for k in ("raw", "agent", "frame"))
        print(
            f"    {label}: raw run {r:.4f} ms, LoadedModel.infer_frame (preprocessing + run) "
            f"{f:.4f} ms, Agent.infer {a:.4f} ms (medians, {len(raw_ms)} each); "
            f"Agent.infer / infer_frame {a / f:.3f}x"
        )
        oks.append(
            goal(
                f"agent_overhead_{label}",
                f"{a / r:.3f}x",
                "<=",
                f"{AGENT_GOAL}",
                a / r <= AGENT_GOAL,
            )
        )
    agent.close()
    return oks


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_workload_arguments(parser)
    parser.add_argument("--devices", type=int, default=32, help="device processes (32 or 128)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per served run")
    parser.add_argument("--deadline-ms", type=float, default=250.0, help="offload deadline")
    parser.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)"
    )
    args = parser.parse_args()
    workload = Workload.from_args(args)
    if missing := workload.missing(cloud=True):
        print(f"workload files missing: {missing}")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-offload-") as tmp_name:
        oks = bench(Path(tmp_name), workload, args)
    print(f"\n{sum(oks)} of {len(oks)} goals met")
    return 0 if all(oks) else 1


def bench(tmp: Path, workload: Workload, args: argparse.Namespace) -> list[bool]:
    deadline, n = args.deadline_ms / 1000.0, args.devices
    cloud = f"{EDGE_NAME}={workload.cloud_model}:{workload.cloud_preprocess}?threads={args.threads}"
    oks: list[bool] = []

    def controller(query: str = "", lanes: int = 1) -> ControllerProcess:
        workers = 2 * n * lanes + 32  # offload streams may hold half of the workers
        return ControllerProcess(tmp / "controller", cloud + query, workers)

    started = time.monotonic()
    ctl: ControllerProcess | None = controller()
    assert ctl is not None
    dirs = enroll_devices(ctl, tmp / "devices", n)
    devices = Devices(dirs, workload.folder / "test.npz")
    print(
        f"[0] {n} devices enrolled in {time.monotonic() - started:.1f}s; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f"; controller pid {ctl.process.pid}",
        flush=True,
    )
    raw = Raw(workload, args.threads)
    try:
        best_batch, rates = raw.best(0.8)
        print(
            f"\n[1] raw ONNX Runtime (threads={args.threads or 'default'}): "
            + ", ".join(f"batch {b} {v:.0f}/s" for b, v in rates.items())
        )

        def run(c: ControllerProcess, **kw: Any) -> tuple[RunResult, tuple[float, float]]:
            address = f"127.0.0.1:{c.device_port}"
            spec = RunSpec(address, args.seconds, deadline, **kw)
            result, server_cpu, device_cpu = devices.run(c, spec)
            return result, (server_cpu, device_cpu)

        print(
            f"\n[2] served: {n} device processes, mutual TLS, closed loop, one frame in flight; "
            f"controller pid {ctl.process.pid}",
            flush=True,
        )
        print(f"    default serving plan (measured at load): {'; '.join(ctl.plans)}")
        raw_before = raw.rate(best_batch, 1.0)
        served, cpu_d = run(ctl)
        raw_after = raw.rate(best_batch, 1.0)
        fps_d = describe("default plan, streams", served, cpu_d, args.seconds)
        unary, cpu_u = run(ctl, use_streams=False)
        fps_u = describe("default plan, unary calls", unary, cpu_u, args.seconds)
        ctl.stop()
        ctl = controller("&batch=16&delay_ms=2")
        batched, cpu_b = run(ctl)
        fps_b = describe("batched (16 x 2 ms), streams", batched, cpu_b, args.seconds)
        ctl.stop()
        ctl = controller("&batch=1")
        single, cpu_1 = run(ctl)
        fps_1 = describe("unbatched (batch 1), streams", single, cpu_1, args.seconds)
        ctl.stop()
        ctl = None
        stock = raw.stock_rate(best_batch, 1.0)
        raw_fps = max((raw_before + raw_after) / 2, stock)
        print(
            f"    raw at batch {best_batch} right before and after the default-plan run: "
            f"{raw_before:.0f} and {raw_after:.0f} frames/s (server's session options, "
            f"{raw.cpu_ms_per_frame:.2f} ms CPU a frame); stock ONNX Runtime options "
            f"(spinning threads): {stock:.0f} frames/s; raw = {raw_fps:.0f}"
        )
        runs = [(served, cpu_d), (unary, cpu_u)]
        per = [c[0] / max(1, len(r.latencies_ms)) * 1000 for r, c in runs]
        speedup = f"{fps_d / fps_u:.2f}x" if fps_u > 0 else "n/a (no unary answer)"
        print(
            f"    streams vs unary calls: {speedup} frames/s, server CPU "
            f"{per[0]:.2f} vs {per[1]:.2f} ms/frame"
        )
        ratio = fps_d / raw_fps
        print(f"    batched (16 x 2 ms) / raw: {fps_b / raw_fps:.3f}")
        p95_d = pct(served.latencies_ms, 95)
        print(
            f"    default plan / unbatched: {fps_d / max(fps_1, 1e-9):.2f}x frames/s, "
            f"p95 {p95_d:.1f} vs {pct(single.latencies_ms, 95):.1f} ms"
        )
        oks.append(
            goal(
                f"served_vs_raw_{n}_devices",
                f"{ratio:.3f} ({fps_d:.0f} vs {raw_fps:.0f} frames/s)",
                ">=",
                f"{RATIO_GOAL}",
                ratio >= RATIO_GOAL,
            )
        )
        p95_b, p95_1 = pct(batched.latencies_ms, 95), pct(single.latencies_ms, 95)
        oks.append(
            goal(
                "batched_vs_unbatched",
                f"{fps_b / max(fps_1, 1e-9):.2f}x frames/s, p95 {p95_b:.1f} vs {p95_1:.1f} ms",
                ">=",
                "1.0x at no worse p95",
                fps_b >= fps_1 and p95_b <= p95_1,
            )
        )
        if (os.cpu_count() or 1) >= 2:
            oks.append(pinned(tmp, workload, args, devices, run, n))
        oks.append(overload(controller, run, max(fps_d, fps_b, fps_1), n, deadline, args.seconds))
    finally:
        devices.stop()
        if ctl is not None:
            ctl.stop()
    print("\nload average after the served runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    path_costs(workload)
    oks += agent_overhead(tmp, workload, 3.0)
    return oks


def pinned(
    tmp: Path, workload: Workload, args: argparse.Namespace, devices: Devices, run: Any, n: int
) -> bool:
    """The fair side by side on shared cores: the controller and the raw run on core 0 with
    one intra-op thread each, the device processes on the other cores."""
    server_cpus, device_cpus = {0}, set(range(1, os.cpu_count() or 2))
    spec = f"{EDGE_NAME}={workload.cloud_model}:{workload.cloud_preprocess}?threads=1"
    ctl = ControllerProcess(tmp / "controller", spec, 2 * n + 32, server_cpus)
    mine = os.sched_getaffinity(0)
    try:
        devices.pin(device_cpus)
        os.sched_setaffinity(0, server_cpus)
        raw = Raw(workload, 1)
        best, rates = raw.best(0.5)
        before = max(raw.rate(best, 1.0), raw.stock_rate(best, 1.0))
        os.sched_setaffinity(0, mine)
        result, cpu = run(ctl)
        os.sched_setaffinity(0, server_cpus)
        after = max(raw.rate(best, 1.0), raw.stock_rate(best, 1.0))
    finally:
        os.sched_setaffinity(0, mine)
        devices.pin(None)
        ctl.stop()
    raw_fps = (before + after) / 2
    print(
        f"\n[2b] pinned: controller and raw ONNX Runtime on CPU {sorted(server_cpus)} with 1 "
        f"intra-op thread, the {n} device processes on CPU {sorted(device_cpus)}; "
        f"plan {'; '.join(ctl.plans)}"
    )
    print("    raw: " + ", ".join(f"batch {b} {v:.0f}/s" for b, v in rates.items()))
    fps = describe("default plan, streams, pinned", result, cpu, args.seconds)
    print(f"    raw at batch {best} before and after: {before:.0f} and {after:.0f} frames/s")
    ratio = fps / raw_fps
    return goal(
        f"served_vs_raw_{n}_devices_pinned",
        f"{ratio:.3f} ({fps:.0f} vs {raw_fps:.0f} frames/s)",
        ">=",
        f"{RATIO_GOAL}",
        ratio >= RATIO_GOAL,
    )


def overload(
    controller: Any, run: Any, sustained: float, n: int, deadline: float, seconds: float
) -> bool:
    """Open loop at twice `sustained` on the default (measured) plan, its queue bound a
    quarter deadline of work; admission (the measured service time against each frame's
    deadline) refuses what cannot finish in time."""
    queue = max(1, int(0.25 * deadline * sustained))
    offered = 2 * sustained
    per_device = offered / n
    lanes = 2  # frames in flight per device (the client's MAX_LANES); beyond, kept local
    ctl = controller(f"&queue={queue}", lanes)
    try:
        over, cpu = run(ctl, rate=per_device, lanes=lanes)
    finally:
        ctl.stop()
    print(
        f"\n[3] overload: offered {offered:.0f} frames/s (2 x {sustained:.0f}), open loop, "
        f"deadline {deadline * 1000:.0f} ms, plan {'; '.join(ctl.plans)}, queue {queue}, "
        f"{lanes} lanes per device"
    )
    describe("admitted and answered", over, cpu, seconds)
    admitted = over.latencies_ms + over.expired_ms
    counts = over.counts
    silent, refused = counts.get("silent", 0), counts.get("overloaded", 0)
    p99 = pct(admitted, 99)
    print(
        f"    {len(over.latencies_ms)} answered, {len(over.expired_ms)} answered "
        f"DEADLINE_EXCEEDED, {refused} RESOURCE_EXHAUSTED, {silent} silent timeouts, "
        f"{counts.get('kept local', 0)} kept local (the device's in-flight bound)"
    )
    ok = p99 <= deadline * 1000 and silent == 0 and refused > 0
    return goal(
        "overload_admitted_p99_within_deadline",
        f"p99 {p99:.1f} ms of {len(admitted)} admitted, {refused} refused, {silent} silent",
        "<=",
        f"{deadline * 1000:.0f} ms, 0 silent",
        ok,
    )


if __name__ == "__main__":
    sys.exit(main())
