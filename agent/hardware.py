"""What this machine is: CPU model and flags, cores, memory, runtimes, accelerators."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import platform
import socket
from pathlib import Path

from agent.errors import AgentError
from edgefleet.hardware import RELEVANT_CPU_FLAGS, HardwareFacts

log = logging.getLogger(__name__)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    model, flags = "", set[str]()
    try:
        text = path.read_text()
    except OSError:
        return platform.processor(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"model name", "hardware", "cpu model"} and not model:
            model = value.strip()
        elif key in {"flags", "features"} and not flags:
            flags = set(value.split())
    # ARM reports "asimd"; NEON is what people call it.
    if "asimd" in flags:
        flags.add("neon")
    return model, flags


def _ram_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _runtimes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    runtimes, providers = [], ()
    if importlib.util.find_spec("onnxruntime"):
        runtimes.append("onnxruntime")
        try:
            import onnxruntime

            providers = tuple(onnxruntime.get_available_providers())
        except ImportError as exc:
            log.warning("onnxruntime is installed but does not import: %s", exc)
    if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tflite_runtime"):
        runtimes.append("litert")
    if importlib.util.find_spec("openvino"):
        runtimes.append("openvino")
    return tuple(runtimes), providers


def _accelerators(providers: tuple[str, ...]) -> tuple[str, ...]:
    found = []
    if Path("/dev/nvidia0").exists() or "CUDAExecutionProvider" in providers:
        found.append("nvidia-gpu")
    if Path("/etc/nv_tegra_release").exists():
        found.append("jetson")
    if Path("/dev/apex_0").exists() or any(Path("/dev").glob("ethosu*")):
        found.append("npu")
    return tuple(found)


def detect() -> HardwareFacts:
    model, flags = _cpuinfo()
    runtimes, providers = _runtimes()
    return HardwareFacts(
        cpu_model=model,
        arch=platform.machine(),
        cpu_flags=tuple(sorted(flags & RELEVANT_CPU_FLAGS)),
        cores=os.cpu_count() or 0,
        ram_bytes=_ram_bytes(),
        runtimes=runtimes,
        onnx_execution_providers=providers,
        os=f"{platform.system()} {platform.release()}",
        hostname=socket.gethostname(),
        accelerators=_accelerators(providers),
    )


def apply_overrides(facts: HardwareFacts, overrides_file: Path) -> HardwareFacts:
    """Replace detected facts with those in a JSON file (simulating or correcting a device)."""
    try:
        data = json.loads(overrides_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AgentError(f"cannot read hardware facts file {overrides_file}: {exc}") from exc
    names = {f.name for f in dataclasses.fields(HardwareFacts)}
    if not isinstance(data, dict) or (unknown := set(data) - names):
        raise AgentError(f"hardware facts file {overrides_file}: unknown fields {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return dataclasses.replace(facts, **values)  # type: ignore[arg-type]
