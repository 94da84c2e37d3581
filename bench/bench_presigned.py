"""Controller CPU per downloaded MB: the gRPC stream (DownloadArtifact) vs a presigned S3 URL
(GetArtifactUrl, bytes straight from the store), side by side in one run.

One controller in this process with the S3 store on moto's standalone server (a separate
process, so S3's own CPU is not counted), one enrolled device, one released target of
``--mb`` random bytes. Each round downloads it once per path, alternately, from a separate
client process (its CPU is not counted either; timing starts once it has imported and
connected). The controller's CPU for a download is this process's user+system time across
it (the main thread only waits), background loops included, so the URL figure is an upper
bound. Medians over ``--rounds``. The bytes the controller streamed are asserted: the size
for every gRPC download, 0 for every URL download.

    .venv/bin/python bench/bench_presigned.py [--mb 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_PREFIX = "models/bench-presigned/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def client(args: argparse.Namespace) -> None:
    """Child process: download the target once over ``args.client`` (grpc | url)."""
    from agent.controller_client import device_channel
    from agent.identity import Credentials, Identity
    from agent.ota.artifact_urls import UrlDownloader, UrlSettings
    from agent.ota.machine import TargetInfo
    from agent.updates_client import UpdateClient

    data_dir = Path(args.data_dir)
    identity = Identity.load(data_dir)
    channel = device_channel(identity.controller, Credentials.load(data_dir), 8 << 20)
    updates = UpdateClient(channel, timeout_s=120)
    dest = Path(args.dest)
    print("ready", flush=True)  # imports done: the parent starts counting at "go"
    sys.stdin.readline()
    if args.client == "grpc":
        updates.download(args.path, dest)
    else:
        answer = updates.artifact_url(args.path)
        t = TargetInfo("bench", args.path, args.size, args.sha256, {"file": "model.onnx"})
        UrlDownloader(UrlSettings(timeout_s=60)).fetch(answer.url, t, dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == args.sha256
    dest.unlink()
    channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=["grpc", "url"], help=argparse.SUPPRESS)
    for name in ("--data-dir", "--dest", "--path", "--sha256"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args)
        return

    import boto3

    from agent.enroll import enroll
    from agent.hardware import detect
    from controller.services.releases import StagedTarget
    from tests.fleet import Admin, start_controller

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # moto: any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-presigned-"))
    ctl = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.2)
        bucket = "bench-presigned"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        ctl = start_controller(
            tmp / "controller", store=f"s3://{bucket}/artifacts", store_endpoint_url=endpoint
        )
        admin = Admin(ctl)
        data_dir = tmp / "device"
        enroll(data_dir, f"127.0.0.1:{ctl.grpc_port}", admin.register("bench", "auto"), detect())
        admin.close()
        blob = tmp / "artifact.bin"
        size = args.mb * 1024 * 1024
        with blob.open("wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1024 * 1024))
        ref = ctl.model_parts.store.put_file(blob)
        blob.unlink()
        path = f"{TARGET_PREFIX}1/{ref.sha256}.model.onnx"
        custom = {"model": "bench", "profile": "any"}
        staged = StagedTarget(path, ref.sha256, ref.size, custom)
        ctl.model_parts.releases.replace_targets(TARGET_PREFIX, [staged])

        def download(mode: str) -> tuple[float, float]:
            cmd = [
                sys.executable, __file__, "--client", mode, "--data-dir", str(data_dir),
                "--dest", str(tmp / f"{mode}.bin"), "--path", path, "--sha256", ref.sha256,
                "--size", str(size),
            ]  # fmt: skip
            child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert child.stdin is not None and child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit(f"{mode} client did not start")
            cpu0, t0 = _cpu_s(), time.perf_counter()
            child.stdin.write("go\n")
            child.stdin.flush()
            if child.wait(timeout=600) != 0:
                raise SystemExit(f"{mode} download failed")
            return _cpu_s() - cpu0, time.perf_counter() - t0

        idle0 = _cpu_s()
        time.sleep(3.0)
        idle_rate = (_cpu_s() - idle0) / 3.0  # background loops, CPU s per s
        runs: dict[str, list[tuple[float, float]]] = {"grpc": [], "url": []}
        traffic = ctl.model_parts.artifact_traffic
        for _ in range(args.rounds):
            for mode in ("grpc", "url"):
                before = traffic.streamed_bytes
                runs[mode].append(download(mode))
                streamed = traffic.streamed_bytes - before
                assert streamed == (size if mode == "grpc" else 0), (mode, streamed)
        mb = size / 1e6
        out: dict[str, dict[str, float]] = {}
        for mode, samples in runs.items():
            cpu = statistics.median(c for c, _ in samples)
            wall = statistics.median(w for _, w in samples)
            out[mode] = {"cpu_ms_per_mb": cpu * 1000 / mb, "wall_s": wall, "mb_per_s": mb / wall}
            print(
                f"{mode:>4}: controller CPU {cpu * 1000 / mb:7.2f} ms/MB  "
                f"(median of {len(samples)}, {mb:.0f} MB, client wall {wall:.2f} s, "
                f"{mb / wall:.0f} MB/s)"
            )
        print(f"background: {idle_rate * 1000:.1f} ms CPU/s while idle (included above)")
        ratio = out["url"]["cpu_ms_per_mb"] / out["grpc"]["cpu_ms_per_mb"]
        print(
            json.dumps(
                {"mb": mb, "rounds": args.rounds, **out, "idle_cpu_ms_per_s": idle_rate * 1000}
            )
        )
        verdict = "OK" if ratio <= 0.1 else "MISSED"
        print(f"goal presigned_controller_cpu_ratio: {ratio:.3f} (target <= 0.1) {verdict}")
    finally:
        if ctl is not None:
            ctl.stop()
        moto.terminate()
        moto.wait(timeout=10)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
