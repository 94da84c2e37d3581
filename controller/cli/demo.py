"""`edgefleet demo`: a controller and a few real agents on this machine, end to end.

Every step runs the real thing: the controller serves gRPC (TLS) and an embedded MQTT broker,
agents are separate `edgefleet-agent` processes that enroll with single-use tokens and then
run with mutual TLS, and every listing goes through the operator's admin API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

from controller.app import Controller
from controller.config import ControllerConfig

# Simulated hardware, so one machine shows how profiles resolve for different devices.
DEMO_DEVICES = [
    ("cam-1", {"site": "lab"}, None),
    ("cam-2", {"site": "lab"}, {"arch": "aarch64", "cpu_flags": ["asimd", "asimddp", "neon"],
                                "cpu_model": "Cortex-A76 (simulated)"}),
    ("cam-3", {"site": "depot"}, {"arch": "aarch64", "cpu_flags": ["asimd", "neon"],
                                  "cpu_model": "Cortex-A72 (simulated)"}),
]


def _step(text: str) -> None:
    typer.secho(f"\n== {text}", fg=typer.colors.CYAN, bold=True)


def _edgefleet(data_dir: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "controller.cli", "--data-dir", str(data_dir), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`edgefleet {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def _agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def _wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def run_demo(agents: int = 3, keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    controller = Controller(ControllerConfig(
        data_dir=root / "controller", grpc_port=0, device_port=0, mqtt_port=0, grpc_host="127.0.0.1"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        _step("1. start a controller (SQLite, its own CA, embedded MQTT broker)")
        controller.start()
        cdir = root / "controller"
        typer.echo(f"gRPC 127.0.0.1:{controller.grpc_port}, MQTT {controller.mqtt_url}, "
                   f"data in {cdir}")

        devices = (DEMO_DEVICES * ((agents + 2) // 3))[:agents]
        for i, (name, labels, facts) in enumerate(devices):
            name = name if i < len(DEMO_DEVICES) else f"cam-{i + 1}"
            _step(f"2.{i + 1} register {name} and enroll its agent")
            label_args = [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
            reg = json.loads(_edgefleet(cdir, "device", "register", name, "--profile", "auto",
                                        *label_args, "--format", "json"))
            typer.echo(f"token for {name}: {reg['enrollment_token'][:20]}... (single use)")
            adir = root / "agents" / name
            extra: list[str] = []
            if facts:
                adir.mkdir(parents=True, exist_ok=True)
                (adir.parent / f"{name}.facts.json").write_text(json.dumps(facts))
                extra = ["--facts", str(adir.parent / f"{name}.facts.json")]
            subprocess.run(_agent_cmd("enroll", "--controller", f"127.0.0.1:{controller.grpc_port}",
                                      "--token", reg["enrollment_token"], "--data-dir", str(adir),
                                      *extra), check=True, timeout=60)
            processes.append(subprocess.Popen(
                _agent_cmd("run", "--data-dir", str(adir), "--heartbeat-interval", "1"),
                stderr=subprocess.DEVNULL))

        _step("3. the agents run with mutual TLS and report presence over MQTT")

        def all_online() -> bool:
            listed = json.loads(_edgefleet(cdir, "device", "list", "--format", "json"))
            return sum(d["online"] for d in listed) == len(devices)

        online = _wait_for(all_online, 20)
        typer.echo(_edgefleet(cdir, "device", "list"))
        if not online:
            typer.secho("not every agent came online in 20 s", fg=typer.colors.RED)
            return 1

        _step("4. a used token cannot enroll a second device")
        again = subprocess.run(
            _agent_cmd("enroll", "--controller", f"127.0.0.1:{controller.grpc_port}", "--token",
                       reg["enrollment_token"], "--data-dir", str(root / "agents" / "intruder")),
            capture_output=True, text=True, timeout=60, check=False)
        typer.echo(f"exit {again.returncode}: {again.stderr.strip()}")

        victim = devices[-1][0] if len(devices) <= len(DEMO_DEVICES) else f"cam-{len(devices)}"
        _step(f"5. revoke {victim}: its next call is refused and it goes offline")
        typer.echo(_edgefleet(cdir, "device", "revoke", victim).strip())
        exited = _wait_for(lambda: processes[-1].poll() is not None, 10)
        typer.echo(f"agent of {victim} exited with code {processes[-1].returncode}"
                   if exited else f"agent of {victim} still running")
        typer.echo(_edgefleet(cdir, "device", "list"))
        typer.secho("\ndemo finished", fg=typer.colors.GREEN, bold=True)
        return 0
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        controller.stop()
        if keep:
            typer.echo(f"demo data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
