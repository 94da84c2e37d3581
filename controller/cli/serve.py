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
    mqtt: str | None = typer.Option(None, "--mqtt", help="mqtt://HOST:PORT or embedded."),
    mqtt_port: int | None = typer.Option(None, "--mqtt-port", help="Embedded broker port."),
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
) -> None:
    """Serve the device and admin APIs (gRPC) and MQTT; stop cleanly on SIGINT/SIGTERM."""
    with errors_as_exit_codes():
        from controller.app import Controller
        from controller.config import build_config

        root = ctx.find_root().obj
        if data_dir is None and root is not None and root.data_dir_given:
            data_dir = root.data_dir
        flags = {
            "data_dir": data_dir,
            "db": db,
            "mqtt": mqtt,
            "mqtt_port": mqtt_port,
            "grpc_port": grpc_port,
            "device_port": device_port,
            "grpc_host": grpc_host,
            "advertise_host": advertise_host,
            "profiles_file": profiles_file,
            "store": store,
            "store_endpoint_url": store_endpoint_url,
        }
        config = build_config(flags, os.environ, config_file)
        controller = Controller(config)
        controller.start()
        typer.echo(
            f"controller ready: gRPC {config.advertise_host}:{controller.grpc_port}, "
            f"MQTT {controller.mqtt_url}, data {config.data_dir}",
            err=True,
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: controller.stop())
        controller.wait()
