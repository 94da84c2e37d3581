"""What demo stories share: the controller, the CLI, agent processes, timed step headings and
the reference workloads in examples/."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from controller.app import Controller, build_controller
from controller.config import ControllerConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class DemoFailed(Exception):
    """A story's claim did not hold."""


@dataclass(frozen=True)
class Workload:
    """A reference workload in examples/: an edge model, the cloud model that answers its
    offloaded frames, their preprocessing, labels and data splits."""

    name: str  # the registry names are f"{name}-edge" and f"{name}-cloud"
    edge_onnx: Path
    edge_preprocess: Path
    cloud_onnx: Path
    cloud_preprocess: Path
    labels: Path
    validation: Path
    calibration: Path
    test_corrupted: Path

    @classmethod
    def in_examples(cls, name: str, edge_preprocess: str, cloud_preprocess: str) -> Workload:
        d = EXAMPLES / name
        return cls(
            name=name,
            edge_onnx=d / "edge.onnx",
            edge_preprocess=d / edge_preprocess,
            cloud_onnx=d / "cloud.onnx",
            cloud_preprocess=d / cloud_preprocess,
            labels=d / "labels.txt",
            validation=d / "validation.npz",
            calibration=d / "calibration.npz",
            test_corrupted=d / "test_corrupted.npz",
        )

    @property
    def edge_model(self) -> str:
        return f"{self.name}-edge"

    @property
    def cloud_model(self) -> str:
        return f"{self.name}-cloud"

    def files(self) -> tuple[Path, ...]:
        return (
            self.edge_onnx,
            self.edge_preprocess,
            self.cloud_onnx,
            self.cloud_preprocess,
            self.labels,
            self.validation,
            self.calibration,
            self.test_corrupted,
        )

    def require(self, *paths: Path) -> None:
        """DemoFailed naming every missing file (all of the workload's when none are given)."""
        missing = [p for p in paths or self.files() if not p.exists()]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise DemoFailed(f"the {self.name} reference workload is incomplete: missing {names}")


# The real workload: Fashion-MNIST frames, a small edge student, an EfficientNet-Lite0 teacher.
FASHION = Workload.in_examples("fashion", "edge_preprocess.json", "cloud_preprocess.json")


@dataclass
class DemoRun:
    root: Path
    config: ControllerConfig
    _controller: Controller | None = None
    agent_dirs: dict[str, Path] = field(default_factory=dict)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    last_token: str = ""
    durations: list[tuple[str, float]] = field(default_factory=list)  # finished steps
    _current: tuple[str, float] | None = None  # the open step and when it began

    def step(self, text: str) -> None:
        """Close the open step (printing how long it took) and open the next one."""
        now = time.monotonic()
        self._close_step(now)
        self._current = (text, now)
        typer.secho(f"\n== {text}", fg=typer.colors.CYAN, bold=True)

    def _close_step(self, now: float) -> None:
        if self._current is None:
            return
        text, began = self._current
        self._current = None
        took = now - began
        self.durations.append((text, took))
        typer.secho(f"   [{took:.1f} s]", dim=True)

    def print_durations(self, slowest: int = 5) -> None:
        """Close the open step; print the total and the slowest steps."""
        self._close_step(time.monotonic())
        total = sum(took for _, took in self.durations)
        typer.secho(
            f"\n{len(self.durations)} steps, {total:.0f} s in steps; the slowest:", bold=True
        )
        for text, took in sorted(self.durations, key=lambda d: -d[1])[:slowest]:
            typer.echo(f"  {took:6.1f} s  {text[:90]}")

    def start_controller(self) -> Controller:
        self._controller = build_controller(self.config)
        return self._controller

    def stop_controller(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            raise DemoFailed("the controller is not running")
        return self._controller

    @property
    def controller_dir(self) -> Path:
        return self.config.data_dir

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.controller.grpc_port}"

    @staticmethod
    def say(text: str) -> None:
        typer.echo(text)

    def edgefleet(self, *args: str, timeout_s: float = 600) -> str:
        """Run the operator CLI against this controller; raise DemoFailed on failure."""
        cmd = [
            sys.executable,
            "-m",
            "controller.cli",
            "--data-dir",
            str(self.controller_dir),
            *args,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise DemoFailed(f"`edgefleet {' '.join(args)}` failed: {result.stderr.strip()}")
        return result.stdout

    def edgefleet_json(self, *args: str) -> Any:
        return json.loads(self.edgefleet(*args, "--format", "json"))

    @staticmethod
    def agent_cmd(*args: str) -> list[str]:
        return [sys.executable, "-m", "agent.cli", *args]

    def start_agent(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        """(Re)start `edgefleet-agent run` for an enrolled demo device."""
        self.stop_agent(name)
        log = self.root / "logs"
        log.mkdir(exist_ok=True)
        with (log / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                self.agent_cmd(
                    "run",
                    "--data-dir",
                    str(self.agent_dirs[name]),
                    "--heartbeat-interval",
                    "1",
                    *extra,
                ),
                stdout=out,
                stderr=out,
            )
        self.agents[name] = proc
        return proc

    def stop_agent(self, name: str) -> None:
        proc = self.agents.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stop_all(self) -> None:
        for name in list(self.agents):
            self.stop_agent(name)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
