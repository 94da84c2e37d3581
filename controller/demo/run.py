"""Runs the demo stories in order against one controller in a temporary directory."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import typer

from controller.config import ONNX2TF_ENV, ControllerConfig, ToolchainSearch, discover_onnx2tf
from controller.demo import (
    dashboard,
    devices,
    inference,
    models,
    observability,
    retrain,
    rollouts,
    training,
)
from controller.demo.context import DemoFailed, DemoRun


def run_demo(agents: int = 3, keep: bool = False, env: Mapping[str, str] | None = None) -> int:
    """``env``: the process environment, read only for EDGEFLEET_ONNX2TF_PYTHON; the LiteRT
    toolchain is otherwise found the way `controller serve` finds it (controller/config.py)."""
    logging.getLogger().setLevel(logging.WARNING)
    # The stories show what the controller does; its warnings about it (a device rolled back,
    # say) would interleave with them. Errors still show.
    controller_log = logging.getLogger("controller")
    controller_level = controller_log.level
    # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (the build measuring
    # LiteRT variants in this process) comes from its minimal C++ logger, which
    # TF_CPP_MIN_LOG_LEVEL does not govern (ai-edge-litert 2.3.0, levels 1-3 tried): it stays.
    onnx2tf = discover_onnx2tf(
        (env or {}).get(ONNX2TF_ENV, ""), ONNX2TF_ENV, ToolchainSearch.of_this_process()
    )
    root = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    demo = DemoRun(
        root=root,
        config=ControllerConfig(
            data_dir=root / "controller",
            grpc_host="127.0.0.1",
            grpc_port=0,
            device_port=0,
            mqtt_port=0,
            http_port=0,  # the dashboard story prints the URL
            shutdown_grace_s=2.0,
            onnx2tf_python=onnx2tf.python if onnx2tf.usable else "",
            alert_interval_s=1.0,  # the observability story: drift scored every second
        ),
    )
    try:
        demo.step(
            "start a controller: SQLite, its own CA, TLS + mutual-TLS gRPC, and an MQTT broker "
            "it supervises (Mosquitto with a generated config, password file and ACL)"
        )
        controller = demo.start_controller()
        demo.say(
            f"gRPC {demo.address} (devices: {controller.device_port}), "
            f"MQTT {controller.mqtt_url} ({controller.broker.kind}), data in {demo.controller_dir}"
        )
        demo.say(onnx2tf.describe())
        controller_log.setLevel(logging.ERROR)
        devices.story(demo, agents)
        models.story(demo)
        training.story(demo)
        inference.story(demo)
        rollouts.story(demo)
        retrain.story(demo)
        observability.story(demo)
        dashboard.story(demo)
        demo.print_durations()
        typer.secho(
            "\ndemo finished: every step above ran for real", fg=typer.colors.GREEN, bold=True
        )
        return 0
    except DemoFailed as exc:
        typer.secho(f"\ndemo failed: {exc}", fg=typer.colors.RED, bold=True, err=True)
        return 1
    finally:
        controller_log.setLevel(controller_level)
        demo.stop_all()
        demo.stop_controller()
        if keep:
            typer.echo(f"demo data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        typer.secho(f"{_since_process_start():.0f} s in all, start-up and teardown included",
                    bold=True)  # fmt: skip


def _since_process_start() -> float:
    """Wall seconds since this process started (what `time` reports for the command)."""
    import psutil

    return time.time() - psutil.Process().create_time()
