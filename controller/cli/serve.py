"""`edgefleet controller serve`: run the controller until SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import typer

from edgefleet.cli import errors_as_exit_codes

app = typer.Typer(help="Run the controller.", no_args_is_help=True)


@app.command()
def serve(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="State directory [~/.edgefleet]."
    ),
    db: str | None = typer.Option(None, "--db", help="Database URL [SQLite in the data dir]."),
    mqtt: str | None = typer.Option(
        None,
        "--mqtt",
        help="auto: start and supervise Mosquitto, or the embedded broker on loopback when "
        "mosquitto is not installed; mosquitto: Mosquitto or fail; embedded: the pure-Python "
        "broker (loopback only); mqtt://HOST:PORT or mqtts://HOST:PORT: an external broker "
        "[auto].",
    ),
    mqtt_port: int | None = typer.Option(
        None, "--mqtt-port", help="Devices' port of the broker the controller runs [18830]."
    ),
    mqtt_host: str | None = typer.Option(
        None,
        "--mqtt-host",
        help="Bind address of that broker [127.0.0.1 when --advertise-host is loopback, "
        "else 0.0.0.0].",
    ),
    mosquitto_binary: str | None = typer.Option(
        None, "--mosquitto", help="The mosquitto binary [PATH, then /usr/sbin]."
    ),
    mqtt_reload_command: str | None = typer.Option(
        None,
        "--mqtt-reload-command",
        help="External broker: command run after the controller rewrites its passwd/acl files "
        "(e.g. 'pkill -HUP mosquitto').",
    ),
    grpc_port: int | None = typer.Option(
        None, "--grpc-port", help="TLS port for enrollment and operators [50051]."
    ),
    device_port: int | None = typer.Option(
        None, "--device-port", help="Mutual-TLS port for enrolled devices [50052]."
    ),
    grpc_host: str | None = typer.Option(None, "--grpc-host", help="Bind address [0.0.0.0]."),
    advertise_host: str | None = typer.Option(
        None, "--advertise-host", help="Host name devices use to reach this controller."
    ),
    profiles_file: Path | None = typer.Option(None, "--profiles", help="TOML of extra profiles."),
    store: str | None = typer.Option(
        None, "--store", help="Artifact store: a directory or s3://bucket/prefix [data dir]."
    ),
    store_endpoint_url: str | None = typer.Option(
        None, "--store-endpoint-url", help="S3-compatible endpoint URL for an s3:// store."
    ),
    config_file: Path | None = typer.Option(None, "--config", help="TOML file ([controller])."),
    onnx2tf_python: str | None = typer.Option(
        None,
        "--onnx2tf-python",
        help="Python of the LiteRT toolchain (onnx2tf + TensorFlow) [found: "
        "EDGEFLEET_ONNX2TF_PYTHON, --config, .venv-tflite in the checkout or next to this "
        "virtualenv, then this interpreter].",
    ),
    cloud_model: list[str] = typer.Option(
        [],
        "--cloud-model",
        help="EDGE_MODEL=PATH/cloud.onnx[:preprocess.json][?batch=16&delay_ms=2&queue=256] "
        "(repeatable): the cloud model answering that edge model's offloaded frames.",
    ),
    offload_max_batch: int | None = typer.Option(
        None,
        "--offload-max-batch",
        min=1,
        help="Fix the cloud batch size (1 = direct calls) [unset: measured per model when it "
        "loads; batching only where it pays].",
    ),
    offload_max_delay_ms: float | None = typer.Option(
        None,
        "--offload-max-delay-ms",
        min=0.0,
        help="Fix the wait for a fuller batch [unset: measured with the batch size; 2 ms "
        "when only --offload-max-batch is given].",
    ),
    hard_examples_max_bytes: int | None = typer.Option(
        None,
        "--hard-examples-max-bytes",
        min=0,
        help="Ceiling on all models' stored hard frames together; each model opts in with "
        "`model hard-examples` [0 = the policies' caps only].",
    ),
    offload_max_queue: int | None = typer.Option(
        None, "--offload-max-queue", min=1, help="Queued frames per model before refusing [256]."
    ),
    http_port: int | None = typer.Option(
        None, "--http-port", min=0, help="Port of /metrics and the dashboard (0 = any) [8480]."
    ),
    http_host: str | None = typer.Option(
        None, "--http-host", help="Bind address of /metrics and the dashboard [127.0.0.1]."
    ),
    http_tls: bool | None = typer.Option(
        None, "--http-tls/--no-http-tls", help="HTTPS with the gRPC server certificate [off]."
    ),
    metrics_token: str | None = typer.Option(
        None,
        "--metrics-token",
        help="Bearer token /metrics requires (also EDGEFLEET_METRICS_TOKEN) [none: open].",
    ),
    alert_webhook: str | None = typer.Option(
        None, "--alert-webhook", help="POST each alert that fires or resolves (JSON) to this URL."
    ),
    offload_ceiling_fps: float | None = typer.Option(
        None,
        "--offload-ceiling-fps",
        min=0.0,
        help="Drift-aware offload: frames/s the fleet may offload above its budgets while "
        "devices drift [0 = off].",
    ),
    alert_interval: float | None = typer.Option(
        None, "--alert-interval", min=0.1, help="Seconds between alert evaluations [5]."
    ),
) -> None:
    """Serve the device and admin APIs (gRPC) and MQTT; stop cleanly on SIGINT/SIGTERM."""
    with errors_as_exit_codes():
        from controller.app import build_controller
        from controller.config import ToolchainSearch, load_config

        root = ctx.find_root().obj
        if data_dir is None and root is not None and root.data_dir_given:
            data_dir = root.data_dir
        flags = {
            "http_port": http_port,
            "http_host": http_host,
            "http_tls": http_tls,
            "metrics_token": metrics_token,
            "data_dir": data_dir,
            "db": db,
            "mqtt": mqtt,
            "mqtt_port": mqtt_port,
            "mqtt_host": mqtt_host,
            "mosquitto_binary": mosquitto_binary,
            "mqtt_reload_command": mqtt_reload_command,
            "onnx2tf_python": onnx2tf_python,
            "grpc_port": grpc_port,
            "device_port": device_port,
            "grpc_host": grpc_host,
            "advertise_host": advertise_host,
            "profiles_file": profiles_file,
            "cloud_models": tuple(cloud_model) or None,
            "offload_max_batch_size": offload_max_batch,
            "offload_max_queue_delay_ms": offload_max_delay_ms,
            "offload_max_queue_size": offload_max_queue,
            "store": store,
            "store_endpoint_url": store_endpoint_url,
            "hard_examples_max_bytes": hard_examples_max_bytes,
            "alert_webhook": alert_webhook,
            "offload_ceiling_fps": offload_ceiling_fps,
            "alert_interval_s": alert_interval,
        }
        loaded = load_config(
            flags, os.environ, config_file, toolchain=ToolchainSearch.of_this_process()
        )
        config = loaded.config
        typer.echo(loaded.onnx2tf.describe(), err=True)
        controller = build_controller(config)
        typer.echo(
            f"controller ready: gRPC {config.advertise_host}:{controller.grpc_port}, "
            f"MQTT {controller.mqtt_url}, data {config.data_dir}",
            err=True,
        )
        typer.echo(
            f"dashboard and /metrics: {controller.http_url}/ (log in with the operator token in "
            f"{config.data_dir / 'operator.token'})",
            err=True,
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: controller.stop())
        controller.wait()
