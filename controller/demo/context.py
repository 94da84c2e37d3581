"""What demo stories share: the controller, the CLI, agent processes, and step headings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from controller.app import Controller


class DemoFailed(Exception):
    """A story's claim did not hold."""


@dataclass
class DemoRun:
    root: Path
    controller: Controller
    agent_dirs: dict[str, Path] = field(default_factory=dict)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    last_token: str = ""

    @property
    def controller_dir(self) -> Path:
        return self.controller.config.data_dir

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.controller.grpc_port}"

    @staticmethod
    def step(text: str) -> None:
        typer.secho(f"\n== {text}", fg=typer.colors.CYAN, bold=True)

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
