"""Agent benchmarks on the Fashion-MNIST workload, each measured side by side in one run.

    .venv/bin/python bench/bench_agent.py [--seconds 3] [--only overhead,cascade,batching]

1. overhead: per-frame latency through Agent.infer (telemetry on) vs raw
   InferenceSession.run of the same session on the same frames (preprocessed), for the edge
   student and the teacher (packed with agent.pack, loaded at this host's profile thread
   count). Goal <= 1.10x.
2. cascade: the edge student (its onnx-fp32 variant as the controller builds it: temperature
   and validation confidence quantiles in variant.json) runs the agent's inference path
   (agent.assembly.build_inference: default budget policy, audits, deadline) on
   test_corrupted.npz, offloading over live loopback gRPC to the teacher served the
   controller's way (CloudModels + OffloadServicer, default batching). Edge-only, cloud-only,
   the cascade, and the oracle. Goal >= 0.99 of cloud-only accuracy at <= 25% offload.
3. batching: offloaded frames/s and p95 with dynamic batching vs without, 32 concurrent
   clients on loopback, the teacher as the cloud model. Goal >= 3x frames/s at no worse p95.

Each goal prints one line: ``goal <name>: <measured> (target <op> <value>) OK | MISSED``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_workload import (  # noqa: E402
    CLOUD_NAME,
    EDGE_NAME,
    Workload,
    add_workload_arguments,
    host_profile,
    interleaved_times,
    litert_toolchain,
)

from agent.inference import (  # noqa: E402
    Agent,
    FixedThreshold,
    GrpcOffloadClient,
    OffloadFailed,
    OffloadFrame,
)
from agent.pack import pack_model  # noqa: E402
from agent.runtime import ModelHolder, load_variant  # noqa: E402
from agent.runtime.backends import OnnxRuntimeBackend  # noqa: E402
from agent.telemetry import TelemetryAggregator  # noqa: E402
from controller.grpc.offload_servicer import OffloadServicer, start_insecure_server  # noqa: E402
from controller.services.offload import load_cloud_model  # noqa: E402
from controller.serving import BatchedModel, CloudModel  # noqa: E402
from edgefleet.profiles import HardwareProfile  # noqa: E402

CASCADE_RATIO_GOAL = 0.99
CASCADE_OFFLOAD_GOAL = 0.25


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def goal(name: str, measured: str, op: str, value: str, ok: bool) -> bool:
    print(f"goal {name}: {measured} (target {op} {value}) {'OK' if ok else 'MISSED'}")
    return ok


# ---------------------------------------------------------------- 1. overhead


def overhead_one(
    tmp: Path, workload: Workload, role: str, threads: int, seconds: float
) -> tuple[float, float]:
    if role == "edge":
        model, pre_file, name = workload.edge_model, workload.edge_preprocess, EDGE_NAME
    else:
        model, pre_file, name = workload.cloud_model, workload.cloud_preprocess, CLOUD_NAME
    directory = tmp / f"packed-{role}"
    pack_model(model, pre_file, directory, workload.labels_file, name)
    loaded = load_variant(directory, threads)
    telemetry = TelemetryAggregator("bench")
    agent = Agent(ModelHolder(loaded), FixedThreshold(0.0), None, telemetry)
    # The raw side is the very session the agent runs: two sessions of 2 intra-op threads on a
    # 2-core host slow each other down (their threads spin after a run), which would measure
    # the sessions' fight, not the agent.
    assert isinstance(loaded.backend, OnnxRuntimeBackend)
    raw = loaded.backend.session
    input_name = raw.get_inputs()[0].name
    frames = workload.split("test")[0][:16]  # the 28 x 28 frames a camera hands the agent
    tensors = [loaded.preprocessor(f) for f in frames]
    for i in range(5):  # warm-up both
        raw.run(None, {input_name: tensors[i]})
        agent.infer(frames[i])
    times = interleaved_times(
        {
            "raw": lambda i: raw.run(None, {input_name: tensors[i % 16]}),
            "agent": lambda i: agent.infer(frames[i % 16]),
            "pre": lambda i: loaded.preprocessor(frames[i % 16]),
            "local": lambda i: loaded.infer_frame(frames[i % 16]),
        },
        seconds,
    )
    agent.close()
    raw_ms, agent_ms = times["raw"], times["agent"]
    r, a, p, m = (statistics.median(times[k]) for k in ("raw", "agent", "pre", "local"))
    shape = list(loaded.metadata.input_shape)
    print(
        f"\n[1] overhead, {name} ({model.name}, input {shape}), {len(raw_ms)} frames each, "
        f"{threads} threads, 28x28 frames from test.npz"
    )
    print(f"    raw InferenceSession.run  median {r:8.4f} ms  mean {statistics.mean(raw_ms):8.4f}")
    print(
        f"    Agent.infer (+telemetry)  median {a:8.4f} ms  mean {statistics.mean(agent_ms):8.4f}"
    )
    print(f"    preprocessing alone       median {p:8.4f} ms  (frame -> tensor)")
    print(f"    LoadedModel.infer_frame   median {m:8.4f} ms  (preprocessing + backend run)")
    print(
        f"    so the agent's own work (confidence, policy, result, telemetry) is about "
        f"{a - m:.4f} ms per frame, the runtime backend's {m - p - r:.4f} ms"
    )
    return a, r


def bench_overhead(tmp: Path, workload: Workload, threads: int, seconds: float) -> list[bool]:
    oks = []
    for role in ("edge", "cloud"):
        if role == "cloud" and workload.missing(cloud=True):
            print("\n[1] overhead on the teacher: skipped, cloud model not there")
            continue
        a, r = overhead_one(tmp, workload, role, threads, seconds)
        name = f"overhead {'student' if role == 'edge' else 'teacher'}"
        measured = f"{a / r:.3f}x raw run ({a:.4f} vs {r:.4f} ms, {a - r:.4f} ms added)"
        oks.append(goal(name, measured, "<=", "1.10x", a / r <= 1.10))
    return oks


# ---------------------------------------------------------------- 2. cascade


def build_edge_variant(
    workload: Workload, host: HardwareProfile, variant: str, work: Path, onnx2tf: str | None
) -> Path:
    """The edge student's variant as the controller's build makes it (calibrated
    temperature and validation confidence quantiles in its variant.json)."""
    from controller.optimize.evaluate import MeasureConfig
    from controller.optimize.pipeline import BUILT, BuildOptions, build_model
    from controller.optimize.tflite_variants import Onnx2TfConfig

    options = BuildOptions(
        measure=MeasureConfig(warmup=1, runs=3, thread_counts=(host.threads,)),
        onnx2tf=Onnx2TfConfig(python=onnx2tf),
        only=(variant,),
    )
    source = workload.source("edge")
    report = build_model(source, [host], work, options=options)
    result = report.result(variant)
    if result.status != BUILT:
        raise SystemExit(f"cannot build {variant} of the edge model: {result.reason}")
    return Path(result.directory)


def oracle(edge_ok: np.ndarray, cloud_ok: np.ndarray, offload: float) -> float:
    """Best accuracy with ``offload`` of the frames answered by the cloud: offload exactly the
    frames the edge gets wrong and the cloud gets right, as many as the budget allows."""
    gains = int((~edge_ok & cloud_ok).sum())
    n = round(offload * len(edge_ok))
    return (int(edge_ok.sum()) + min(n, gains)) / len(edge_ok)


def smallest_oracle_offload(edge_ok: np.ndarray, cloud_ok: np.ndarray, target: float) -> float:
    """Smallest offload fraction at which the oracle reaches ``target`` accuracy (inf if never)."""
    need = math.ceil(target * len(edge_ok) - 1e-9) - int(edge_ok.sum())
    gains = int((~edge_ok & cloud_ok).sum())
    if need > gains:
        return math.inf
    return max(0, need) / len(edge_ok)


def confidence_sweep(
    edge_pred: np.ndarray, conf: np.ndarray, cloud_pred: np.ndarray, y: np.ndarray, k: int
) -> float:
    """Accuracy when the ``k`` least confident edge answers are replaced by the cloud's."""
    answer = edge_pred.copy()
    hard = np.argsort(conf, kind="stable")[:k]
    answer[hard] = cloud_pred[hard]
    return float((answer == y).mean())


def bench_cascade(
    tmp: Path, workload: Workload, host: HardwareProfile, variant: str, onnx2tf: str | None
) -> bool | None:
    import grpc

    from agent.assembly import AgentConfig, build_inference
    from agent.inference.active import ActiveModel
    from agent.inference.policy import DEFAULT_BUDGET
    from agent.telemetry.aggregator import TelemetryAggregator
    from controller.app import batching_defaults
    from controller.config import ControllerConfig
    from controller.services.offload import CloudModels, CloudModelSpec, OffloadPairs

    if missing := workload.missing(cloud=True):
        print(f"\n[2] cascade: skipped, missing {', '.join(map(str, missing))}")
        return None
    edge_dir = build_edge_variant(workload, host, variant, tmp / "edge-build", onnx2tf)
    meta = json.loads((edge_dir / "variant.json").read_text())
    tx, ty = workload.split("test_corrupted")

    # the controller side: the teacher behind CloudModels (default batching), OffloadServicer
    spec = CloudModelSpec(EDGE_NAME, workload.cloud_model, workload.cloud_preprocess)
    defaults = batching_defaults(ControllerConfig())
    cloud_models = CloudModels([spec], defaults)
    cloud_models.preload()
    serving = cloud_models.served()[spec.edge_model].plan.summary()  # measured on this host
    pairs = OffloadPairs()
    servicer = OffloadServicer(
        cloud_models, identify=lambda _c: "bench-device", on_pair=pairs.record
    )
    server, port = start_insecure_server(servicer)

    # the device side: the daemon's own inference assembly, its defaults, this host's threads
    cfg = AgentConfig(
        data_dir=tmp / "agent",
        model_dir=edge_dir,
        source=str(workload.folder / "test_corrupted.npz"),
        threads=host.threads,
        results_file=tmp / "agent" / "results.jsonl",
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    with contextlib.ExitStack() as stack:
        model = ActiveModel(host.threads)
        telemetry = TelemetryAggregator("bench-device")
        model.listeners.append(lambda m: telemetry.set_model(m.metadata.model, m.variant_id))
        inference = build_inference(cfg, model, telemetry, channel, [], stack)
        model.load(edge_dir)
        started = time.perf_counter()
        inference.start()
        inference.done.wait(timeout=3600)
        wall = time.perf_counter() - started
        inference.stop()
    channel.close()
    server.stop(None)
    cloud_models.close()
    assert cfg.results_file is not None
    results = [json.loads(line) for line in cfg.results_file.read_text().splitlines()]
    order = [int(r["frame_id"].rsplit(":", 1)[1]) for r in results]
    if order != list(range(len(ty))):
        print(f"    warning: {len(results)} results for {len(ty)} frames")
    y = ty[order]

    # cloud-only: the same loader, preprocessing and session settings as the served model
    cloud = load_cloud_model(
        workload.cloud_model, "offline", None, None, 0, workload.cloud_preprocess
    )
    cloud_pred = np.concatenate(
        [
            [p.label for p in cloud.run_batch([cloud.preprocess(f) for f in tx[i : i + 64]])]
            for i in range(0, len(tx), 64)
        ]
    )[order]

    live = np.array([r["label"] for r in results])
    edge_pred = np.array([r["edge_label"] for r in results])
    conf = np.array([r["edge_confidence"] for r in results])
    offloaded = np.array([r["offloaded"] for r in results])
    audited = np.array([r["audited"] for r in results])
    failures = sum(r["offload_error"] is not None for r in results)
    edge_ok, cloud_ok = edge_pred == y, cloud_pred == y
    edge_acc, cloud_acc, cascade_acc = edge_ok.mean(), cloud_ok.mean(), float((live == y).mean())
    rate = float(offloaded.mean())
    mismatch = int((live[offloaded] != cloud_pred[offloaded]).sum())
    target = CASCADE_RATIO_GOAL * cloud_acc
    n = len(y)

    print(
        f"\n[2] cascade on test_corrupted.npz ({n} frames), {meta['variant_id']}"
        f" (T {meta['temperature']:.2f}) on {host.threads} threads -> live gRPC -> {spec.path.name}"
        f" (serving plan: {serving}); {wall:.1f} s"
    )
    print(f"    edge only   {edge_acc:7.2%}")
    print(f"    cloud only  {cloud_acc:7.2%}")
    print(
        f"    cascade     {cascade_acc:7.2%} at {rate:.1%} offload (default budget policy, "
        f"target {DEFAULT_BUDGET:.0%}; {int(audited.sum())} audits = {audited.mean():.1%} more "
        f"cloud traffic; {failures} failed offloads; {mismatch} offloaded answers differ from "
        f"the offline cloud answer)"
    )
    print(f"    ratio to cloud-only {cascade_acc / cloud_acc:.4f}")
    best = oracle(edge_ok, cloud_ok, rate)
    need = smallest_oracle_offload(edge_ok, cloud_ok, target)
    need_txt = f"{need:.1%}" if math.isfinite(need) else "never"
    print(
        f"    oracle      {best:7.2%} at the same {rate:.1%} offload ({best / cloud_acc:.4f} of "
        f"cloud); reaches 0.99 of cloud ({target:.2%}) at {need_txt} offload"
    )
    ks = [round(f * n) for f in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)]
    cells = "  ".join(
        f"{k / n:.0%} {confidence_sweep(edge_pred, conf, cloud_pred, y, k):.2%}" for k in ks
    )
    print(f"    offline, least confident first (agent's calibrated confidence): {cells}")
    by_conf = next(
        (k for k in range(n + 1) if confidence_sweep(edge_pred, conf, cloud_pred, y, k) >= target),
        None,
    )
    if by_conf is not None:
        print(f"    least-confident-first reaches 0.99 of cloud at {by_conf / n:.1%} offload")
    counts = pairs.counts().get("bench-device")
    if counts is not None:
        print(
            f"    controller answered {counts.offload_pairs} offloads ({counts.offload_agreed} "
            f"agreed with the edge) and {counts.audit_pairs} audits"
        )
    ratio = cascade_acc / cloud_acc
    ok = ratio >= CASCADE_RATIO_GOAL and rate <= CASCADE_OFFLOAD_GOAL
    return goal(
        "cascade",
        f"{ratio:.4f} of cloud-only ({cascade_acc:.2%} vs {cloud_acc:.2%}) at {rate:.1%} offload",
        ">=",
        f"{CASCADE_RATIO_GOAL} at <= {CASCADE_OFFLOAD_GOAL:.0%} offload",
        ok,
    )


# ---------------------------------------------------------------- 3. batching


def load_clients(
    target: str, n_clients: int, seconds: float, frame: np.ndarray
) -> tuple[float, list[float], int]:
    """Run `n_clients` blocking clients in a separate process (its own GIL, like real devices)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    child = ctx.Process(target=_client_process, args=(target, n_clients, seconds, frame, out))
    child.start()
    fps, latencies, failures = out.get(timeout=seconds + 60)
    child.join(10)
    return fps, latencies, failures


def _client_process(
    target: str, n_clients: int, seconds: float, frame: np.ndarray, out: Any
) -> None:
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start_gate = threading.Barrier(n_clients + 1)
    stop_at = [0.0]

    def client_loop(k: int) -> None:
        client = GrpcOffloadClient.insecure(target)
        request = OffloadFrame("bench", "bench:1", f"c{k}", frame, 0, 0.1)
        client.offload(request, 10.0)  # connect
        start_gate.wait()
        mine: list[float] = []
        while time.monotonic() < stop_at[0]:
            t = time.perf_counter()
            try:
                client.offload(request, 10.0)
                mine.append((time.perf_counter() - t) * 1000)
            except OffloadFailed:
                with lock:
                    failures[0] += 1
        client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.monotonic()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    out.put((len(latencies) / (time.monotonic() - began), latencies, failures[0]))


def bench_batching(workload: Workload, seconds: float) -> bool | None:
    from controller.optimize.source import load_preprocessing

    if missing := workload.missing(cloud=True):
        print(f"\n[3] batching: skipped, missing {', '.join(map(str, missing))}")
        return None
    pre = load_preprocessing(workload.cloud_preprocess)
    frame = workload.split("test_corrupted")[0][0]  # a raw 28 x 28 frame, as devices send
    cloud = CloudModel(workload.cloud_model, pre, model_id="cloud:1", threads=1)
    rows = []
    for mode in ("unbatched", "batched"):
        model: Any = cloud
        if mode == "batched":
            model = BatchedModel(cloud, max_batch_size=32, max_queue_delay_ms=2.0, workers=2)
        servicer = OffloadServicer({"bench": model}, lambda _c: "bench")
        server, port = start_insecure_server(servicer, max_workers=40)
        fps, lat, failed = load_clients(f"127.0.0.1:{port}", 32, seconds, frame)
        server.stop(None)
        if mode == "batched":
            model.close()
            extra = f"  mean batch {model.batcher.items / max(1, model.batcher.batches):.1f}"
        else:
            extra = ""
        extra += f"  mean {statistics.mean(lat):.1f} max {max(lat):.0f} ms n={len(lat)}"
        rows.append((mode, fps, percentile(lat, 50), percentile(lat, 95), failed, extra))
    print(
        f"\n[3] cloud serving, 32 concurrent clients on loopback, {workload.cloud_model.name} "
        f"(1 intra-op thread; batched: 2 workers, batch <= 32, 2 ms), {seconds:.0f} s each"
    )
    for mode, fps, p50, p95, failed, extra in rows:
        print(
            f"    {mode:10s} {fps:6.0f} frames/s  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
            f"failures {failed}{extra}"
        )
    speedup = rows[1][1] / max(1.0, rows[0][1])
    ok = speedup >= 3.0 and rows[1][3] <= rows[0][3]
    return goal(
        "batching",
        f"{speedup:.2f}x frames/s, p95 {rows[1][3]:.1f} vs {rows[0][3]:.1f} ms",
        ">=",
        "3x at no worse p95",
        ok,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_workload_arguments(parser)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", default="overhead,cascade,batching")
    parser.add_argument("--edge-variant", default="onnx-fp32", help="edge variant the cascade runs")
    parser.add_argument("--onnx2tf-python", default=None, help="for a LiteRT --edge-variant")
    parser.add_argument("--threads", type=int, default=None, help="default: the host profile's")
    args = parser.parse_args()
    workload = Workload.from_args(args)
    if missing := workload.missing(cloud=False):
        print("workload files missing: " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2
    host, _ = host_profile()
    threads = args.threads or host.threads
    host = dataclasses.replace(host, threads=threads)
    print(f"host profile (auto): {host.name}, {threads} threads")
    if workload.stand_in:
        print(f"(cloud role played by {workload.cloud_model}: a stand-in, not the teacher)")
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp_dir:
        tmp = Path(tmp_dir)
        if "overhead" in only:
            bench_overhead(tmp, workload, threads, args.seconds)
        if "cascade" in only:
            onnx2tf = None
            if args.edge_variant.startswith("tflite"):
                onnx2tf, line = litert_toolchain(args.onnx2tf_python)
                print(line)
            bench_cascade(tmp, workload, host, args.edge_variant, onnx2tf)
        if "batching" in only:
            bench_batching(workload, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
