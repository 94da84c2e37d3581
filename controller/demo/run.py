"""Runs the demo stories in order against one controller in a temporary directory."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import typer

from controller.app import Controller
from controller.config import ControllerConfig
from controller.demo import devices, inference, models, rollouts
from controller.demo.context import DemoFailed, DemoRun

# made by scripts/tflite-venv.sh; with it the demo builds LiteRT variants too
TFLITE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-tflite" / "bin" / "python"


def run_demo(agents: int = 3, keep: bool = False) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    controller = Controller(
        ControllerConfig(
            data_dir=root / "controller",
            grpc_host="127.0.0.1",
            grpc_port=0,
            device_port=0,
            mqtt_port=0,
            shutdown_grace_s=2.0,
            onnx2tf_python=str(TFLITE_PYTHON) if TFLITE_PYTHON.exists() else "",
        )
    )
    demo = DemoRun(root=root, controller=controller)
    try:
        demo.step("start a controller: SQLite, its own CA, TLS + mutual-TLS gRPC, embedded MQTT")
        controller.start()
        demo.say(
            f"gRPC {demo.address} (devices: {controller.device_port}), "
            f"MQTT {controller.mqtt_url}, data in {demo.controller_dir}"
        )
        devices.story(demo, agents)
        models.story(demo)
        inference.story(demo)
        rollouts.story(demo)
        typer.secho(
            "\ndemo finished: every step above ran for real", fg=typer.colors.GREEN, bold=True
        )
        return 0
    except DemoFailed as exc:
        typer.secho(f"\ndemo failed: {exc}", fg=typer.colors.RED, bold=True, err=True)
        return 1
    finally:
        demo.stop_all()
        controller.stop()
        if keep:
            typer.echo(f"demo data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
