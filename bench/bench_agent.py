"""Agent benchmarks, each measured side by side in one run (not a test).

    .venv/bin/python bench/bench_agent.py [--seconds 3] [--only overhead,cascade,batching]

1. overhead: per-frame latency through Agent.infer (telemetry on) vs raw
   InferenceSession.run on the same model and frames. Goal <= 1.10x.
2. cascade: examples/digits/test_corrupted.npz - edge only, cloud only, cascade at the
   default policy (through a real loopback gRPC server), oracle. Goal >= 99% of cloud-only
   accuracy at <= 25% offload.
3. batching: offloaded frames/s and p95 with dynamic batching vs without, 32 concurrent
   clients on loopback. Goal >= 3x frames/s at no worse p95.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.inference import (  # noqa: E402
    Agent,
    AgentConfig,
    BudgetPolicy,
    FixedThreshold,
    GrpcOffloadClient,
    OffloadFailed,
    OffloadFrame,
)
from agent.runtime import ModelHolder, load_variant  # noqa: E402
from agent.telemetry import TelemetryAggregator  # noqa: E402
from controller.serving import (  # noqa: E402
    BatchedModel,
    CloudModel,
    OffloadServicer,
    start_insecure_server,
)
from edgefleet.confidence import confidence_quantiles  # noqa: E402
from edgefleet.modelmeta import Preprocessing, VariantMetadata  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
MOBILENET_SCRIPT = ROOT / "examples" / "mobilenetv2" / "make_mobilenetv2.py"
DEFAULT_OFFLOAD_FRACTION = 0.2  # the default policy: BudgetPolicy(target_fraction=0.2)


def write_variant(directory: Path, model: Path, pre: Preprocessing, shape: tuple[int, ...]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, directory / "model.onnx")
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = VariantMetadata(
        model="bench", version=1, variant="onnx-fp32", variant_id="bench:1:onnx-fp32",
        runtime="onnxruntime", precision="fp32", file="model.onnx",
        input_name=session.get_inputs()[0].name, input_shape=shape, input_dtype="float32",
        output_name=session.get_outputs()[0].name, preprocessing=pre,
    )  # fmt: skip
    (directory / "variant.json").write_text(meta.to_json())
    return directory


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ---------------------------------------------------------------- 1. overhead


def mobilenet_model(tmp: Path) -> tuple[Path, str]:
    if MOBILENET_SCRIPT.exists():
        out = tmp / "mobilenetv2.onnx"
        subprocess.run([sys.executable, str(MOBILENET_SCRIPT), "--out", str(out)], check=True)
        return out, "MobileNetV2 (examples/mobilenetv2/make_mobilenetv2.py)"
    return synthetic_convnet(
        tmp / "convnet.onnx"
    ), "synthetic 224x224 conv net (no MobileNetV2 script)"


def synthetic_convnet(
    path: Path,
    side: int = 224,
    channels: int = 3,
    plan: tuple[tuple[int, int], ...] = ((32, 2), (64, 2), (128, 2), (256, 2), (512, 2)),
    classes: int = 1000,
) -> Path:
    """A stand-in model with random weights: strided 3x3 convs, global pooling, a linear head.
    The default is of MobileNetV2-like cost at 224x224x3."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev, c_in = [], [], "input", channels
    for i, (c_out, stride) in enumerate(plan):
        w = rng.normal(0, 0.05, (c_out, c_in, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], strides=[stride] * 2,
                                      pads=[1, 1, 1, 1]))  # fmt: skip
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, c_in = f"r{i}", c_out
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    head = rng.normal(0, 0.05, (c_in, classes)).astype(np.float32)
    inits.append(numpy_helper.from_array(head, "fc"))
    nodes.append(helper.make_node("MatMul", ["flat", "fc"], ["logits"]))
    graph = helper.make_graph(
        nodes, "convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def bench_overhead(tmp: Path, seconds: float) -> None:
    import onnxruntime as ort

    model_path, what = mobilenet_model(tmp)
    pre = Preprocessing(size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225))  # fmt: skip
    loaded = load_variant(write_variant(tmp / "mnv2", model_path, pre, (-1, 3, 224, 224)), 2)
    telemetry = TelemetryAggregator("bench")
    agent = Agent(ModelHolder(loaded), FixedThreshold(0.0), None, telemetry)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    raw = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = raw.get_inputs()[0].name
    frames = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    tensors = [loaded.preprocessor(f) for f in frames]
    for i in range(5):  # warm-up both
        raw.run(None, {name: tensors[i]})
        agent.infer(frames[i])
    raw_ms: list[float] = []
    agent_ms: list[float] = []
    end = time.monotonic() + seconds
    i = 0
    # Alternating blocks, so drift hits both sides equally. Not call by call: each session's
    # intra-op threads spin for a while after a run and would slow the other session's next
    # call, which measures two sessions fighting, not the agent.
    while time.monotonic() < end:
        for _ in range(16):
            t = time.perf_counter()
            raw.run(None, {name: tensors[i % 16]})
            raw_ms.append((time.perf_counter() - t) * 1000)
            i += 1
        for _ in range(16):
            t = time.perf_counter()
            agent.infer(frames[i % 16])
            agent_ms.append((time.perf_counter() - t) * 1000)
            i += 1
    agent.close()
    r, a = statistics.median(raw_ms), statistics.median(agent_ms)
    print(f"\n[1] overhead on {what}, {len(raw_ms)} frames each, 2 threads")
    print(f"    raw InferenceSession.run  median {r:7.2f} ms  mean {statistics.mean(raw_ms):7.2f}")
    print(
        f"    Agent.infer (+telemetry)  median {a:7.2f} ms  mean {statistics.mean(agent_ms):7.2f}"
    )
    print(
        f"    ratio (median) {a / r:.3f}x   goal <= 1.10x   {'OK' if a / r <= 1.10 else 'MISSED'}"
    )


# ---------------------------------------------------------------- 2. cascade


def digits_preprocessing() -> Preprocessing:
    raw: dict[str, Any] = json.loads((DIGITS / "preprocess.json").read_text())
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return Preprocessing(**fields)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Grid search of the softmax temperature minimizing validation NLL."""
    best, best_nll = 1.0, float("inf")
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 60)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        nll = float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean())
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def bench_cascade(tmp: Path) -> None:
    needed = [DIGITS / n for n in ("edge.onnx", "cloud.onnx", "preprocess.json",
                                    "validation.npz", "test_corrupted.npz")]  # fmt: skip
    if not all(p.exists() for p in needed):
        print("\n[2] cascade: skipped, examples/digits models/data are not there yet")
        return
    pre = digits_preprocessing()
    with np.load(DIGITS / "validation.npz") as v, np.load(DIGITS / "test_corrupted.npz") as t:
        vx, vy, tx, ty = v["x"], v["y"], t["x"], t["y"]
    variant = write_variant(tmp / "digits-edge", DIGITS / "edge.onnx", pre, (-1, 1, 32, 32))
    edge = load_variant(variant, threads=1)
    cloud = CloudModel(DIGITS / "cloud.onnx", pre, model_id="digits-cloud:1", threads=1)
    edge_val = np.stack([edge.infer_frame(f) for f in vx])
    temperature = fit_temperature(edge_val, vy)
    meta = json.loads((variant / "variant.json").read_text())
    meta["temperature"] = temperature
    (variant / "variant.json").write_text(json.dumps(meta))
    edge = load_variant(variant, threads=1)

    edge_logits = np.stack([edge.infer_frame(f) for f in tx])
    cloud_pred = np.array([p.label for p in cloud.run_batch([cloud.preprocess(f) for f in tx])])
    edge_pred = edge_logits.argmax(axis=1)
    z = edge_logits / temperature
    conf = (
        np.exp(z - z.max(1, keepdims=True))
        / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    ).max(1)
    edge_acc, cloud_acc = float((edge_pred == ty).mean()), float((cloud_pred == ty).mean())
    oracle_wrong = edge_pred != ty
    oracle_acc = float(np.where(oracle_wrong, cloud_pred == ty, True).mean())

    print(
        f"\n[2] cascade on test_corrupted.npz ({len(ty)} frames), "
        f"edge temperature {temperature:.2f}"
    )
    print("    offload  accuracy  (offline sweep: least-confident first)")
    order = np.argsort(conf, kind="stable")
    for fraction in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0):
        answer = edge_pred.copy()
        hard = order[: round(fraction * len(ty))]
        answer[hard] = cloud_pred[hard]
        print(f"    {fraction:6.0%}   {float((answer == ty).mean()):7.2%}")

    # the default policy, live: Agent -> gRPC -> batcher -> cloud model
    batched = BatchedModel(cloud, max_batch_size=16, max_queue_delay_ms=1.0)
    server, port = start_insecure_server(OffloadServicer({"bench": batched}, lambda _c: "bench"))
    client = GrpcOffloadClient.insecure(f"127.0.0.1:{port}")
    telemetry = TelemetryAggregator("bench")
    policy = BudgetPolicy(target_fraction=DEFAULT_OFFLOAD_FRACTION)
    # as the agent does with a built variant: start from its validation confidences
    policy.prime(confidence_quantiles(edge_val, temperature)["max_softmax"])
    config = AgentConfig(offload_deadline_s=2.0, audit_fraction=0.0)
    agent = Agent(ModelHolder(edge), policy, client, telemetry, config)
    results = [agent.infer(f, str(i)) for i, f in enumerate(tx)]
    agent.close()
    client.close()
    server.stop(None)
    batched.close()
    live = np.array([r.label for r in results])
    offloaded = float(np.mean([r.offloaded for r in results]))
    failures = sum(r.offload_error is not None for r in results)
    cascade_acc = float((live == ty).mean())
    ratio = cascade_acc / cloud_acc
    print(f"    edge only   {edge_acc:7.2%}")
    print(f"    cloud only  {cloud_acc:7.2%}")
    print(
        f"    cascade     {cascade_acc:7.2%} at {offloaded:.1%} offload (BudgetPolicy "
        f"target {DEFAULT_OFFLOAD_FRACTION:.0%}, live gRPC, {failures} failures)"
    )
    print(f"    oracle      {oracle_acc:7.2%} at {float(oracle_wrong.mean()):.1%} offload")
    ok = ratio >= 0.99 and offloaded <= 0.25
    print(
        f"    cascade/cloud {ratio:.3f}   goal >= 0.99 at <= 25% offload   "
        f"{'OK' if ok else 'MISSED'}"
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


def bench_batching(tmp: Path, seconds: float) -> None:
    if (DIGITS / "cloud.onnx").exists():
        model_path, pre, what = DIGITS / "cloud.onnx", digits_preprocessing(), "digits cloud.onnx"
    else:
        plan = ((32, 2), (64, 1), (96, 2), (128, 2))  # about the digits cloud model's cost
        model_path = synthetic_convnet(tmp / "cloud-convnet.onnx", 32, 1, plan, 10)
        pre = Preprocessing(size=(32, 32), channels=1)
        what = "synthetic 32x32 conv net (digits cloud.onnx not there yet)"
    h, w = pre.size
    frame = np.random.default_rng(0).integers(0, 256, (h, w, pre.channels), np.uint8)
    cloud = CloudModel(model_path, pre, model_id="cloud:1", threads=1)
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
    print(f"\n[3] cloud serving, 32 concurrent clients on loopback, {what}, {seconds:.0f} s each")
    for mode, fps, p50, p95, failed, extra in rows:
        print(f"    {mode:10s} {fps:6.0f} frames/s  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
              f"failures {failed}{extra}")  # fmt: skip
    speedup = rows[1][1] / max(1.0, rows[0][1])
    ok = speedup >= 3.0 and rows[1][3] <= rows[0][3]
    print(
        f"    batched/unbatched {speedup:.2f}x frames/s, p95 {rows[1][3]:.1f} vs "
        f"{rows[0][3]:.1f} ms   goal >= 3x at no worse p95   {'OK' if ok else 'MISSED'}"
    )


def main() -> int:
    global DIGITS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", default="overhead,cascade,batching")
    parser.add_argument("--digits", type=Path, default=DIGITS, help="digits models and data")
    args = parser.parse_args()
    DIGITS = args.digits
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "overhead" in only:
            bench_overhead(tmp, args.seconds)
        if "cascade" in only:
            bench_cascade(tmp)
        if "batching" in only:
            bench_batching(tmp, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
