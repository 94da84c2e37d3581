"""Hardware profiles: what a kind of device can run, and within which budgets.

A small built-in catalogue covers common edge targets; operators add their own in a TOML file:

    [profiles.my-camera]
    description = "Quad-core ARM camera with 512 MB for models"
    arch = "aarch64"
    requires_flags = ["asimddp"]
    runtimes = ["litert", "onnxruntime"]
    precisions = ["fp32", "int8"]
    memory_budget_mb = 512
    model_size_budget_mb = 20
    threads = 4

``resolve_profile`` picks the most specific profile whose requirements a device's facts meet.

A profile states the runtimes its devices have in ``runtimes``; ``requires_runtimes`` are those
a device must report to match (an x86-64 device that reports OpenVINO resolves to the
``*-openvino`` twin of its profile, so only devices that have OpenVINO are assigned OpenVINO
variants; only x86-64-bf16-openvino, for CPUs with AVX-512 BF16, takes bf16 ones).

TensorRT is a capability on paper only: the nvidia-jetson profile lists ONNX Runtime's
TensorrtExecutionProvider, but no TensorRT engine is built or measured here (no accelerator
on the build host); such devices run ONNX variants through that provider.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.errors import InvalidInput, NotFound
from edgefleet.hardware import HardwareFacts

AUTO = "auto"
RUNTIMES = frozenset({"onnxruntime", "litert", "openvino"})
PRECISIONS = frozenset({"fp32", "fp16", "bf16", "int8"})
MB = 1024 * 1024


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    runtimes: tuple[str, ...]
    precisions: tuple[str, ...]
    memory_budget_bytes: int
    model_size_budget_bytes: int
    threads: int
    arch: str = ""  # "" matches any architecture
    requires_flags: tuple[str, ...] = ()  # every one of these
    requires_any_flag: tuple[str, ...] = ()  # at least one of these
    requires_accelerators: tuple[str, ...] = ()
    requires_runtimes: tuple[str, ...] = ()  # the device must report every one of these
    integer_only: bool = False  # an NPU that runs only full-int8 models
    int8_reduce_range: bool = False  # CPUs without VNNI: 7-bit weights avoid overflow
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    accuracy_budget_pp: float = 1.0  # largest accepted top-1 drop, percentage points
    builtin: bool = field(default=False, compare=False)

    def matches(self, facts: HardwareFacts) -> bool:
        if self.arch and facts.arch != self.arch:
            return False
        if any(not facts.has_flag(flag) for flag in self.requires_flags):
            return False
        if self.requires_any_flag and not any(facts.has_flag(f) for f in self.requires_any_flag):
            return False
        if any(acc not in facts.accelerators for acc in self.requires_accelerators):
            return False
        if any(runtime not in facts.runtimes for runtime in self.requires_runtimes):
            return False
        return bool(set(self.runtimes) & set(facts.runtimes)) or not facts.runtimes

    @property
    def specificity(self) -> int:
        """How much a match says about the device: more requirements, more specific."""
        return (
            4 * len(self.requires_accelerators)
            + 2 * len(self.requires_runtimes)
            + 2 * len(self.requires_flags)
            + (1 if self.requires_any_flag else 0)
            + (1 if self.arch else 0)
        )


_X86_VNNI = HardwareProfile(
    name="x86-64-vnni",
    description="x86-64 with AVX-512 VNNI or AVX-VNNI: fast int8 dot products",
    arch="x86_64",
    requires_flags=("avx2",),
    requires_any_flag=("avx512_vnni", "avx_vnni"),
    runtimes=("onnxruntime", "litert"),
    precisions=("fp32", "fp16", "int8"),
    memory_budget_bytes=2048 * MB,
    model_size_budget_bytes=200 * MB,
    threads=2,
)
_X86_AVX2 = HardwareProfile(
    name="x86-64-avx2",
    description="x86-64 with AVX2 but no VNNI: int8 weights use reduce_range",
    arch="x86_64",
    requires_flags=("avx2",),
    runtimes=("onnxruntime", "litert"),
    precisions=("fp32", "fp16", "int8"),
    memory_budget_bytes=2048 * MB,
    model_size_budget_bytes=200 * MB,
    threads=2,
    int8_reduce_range=True,
)


def _with_openvino(base: HardwareProfile) -> HardwareProfile:
    """``base`` on a device that reports OpenVINO: its variants compete too."""
    return dataclasses.replace(
        base,
        name=f"{base.name}-openvino",
        description=f"{base.name} with OpenVINO installed: OpenVINO variants compete too",
        requires_runtimes=("openvino",),
        runtimes=("openvino", *base.runtimes),
    )


BUILTIN_PROFILES: tuple[HardwareProfile, ...] = (
    _X86_VNNI,
    _X86_AVX2,
    HardwareProfile(
        name="x86-64-bf16-openvino",
        description="x86-64 with AVX-512 BF16 and VNNI and OpenVINO: bf16 variants too",
        arch="x86_64",
        requires_flags=("avx2", "avx512_vnni", "avx512_bf16"),
        requires_runtimes=("openvino",),
        runtimes=("openvino", "onnxruntime", "litert"),
        precisions=("fp32", "fp16", "bf16", "int8"),
        memory_budget_bytes=2048 * MB,
        model_size_budget_bytes=200 * MB,
        threads=2,
    ),
    _with_openvino(_X86_VNNI),
    _with_openvino(_X86_AVX2),
    HardwareProfile(
        name="arm64-dotprod",
        description="ARMv8.2+ cores with the dot-product extension (Cortex-A55/A76, Graviton)",
        arch="aarch64",
        requires_flags=("asimddp",),
        runtimes=("litert", "onnxruntime"),
        precisions=("fp32", "fp16", "int8"),
        memory_budget_bytes=1024 * MB,
        model_size_budget_bytes=100 * MB,
        threads=4,
    ),
    HardwareProfile(
        name="arm64-a72",
        description="Cortex-A72 class (Raspberry Pi 4): NEON, no dot product",
        arch="aarch64",
        runtimes=("litert", "onnxruntime"),
        precisions=("fp32", "int8"),
        memory_budget_bytes=512 * MB,
        model_size_budget_bytes=50 * MB,
        threads=4,
        int8_reduce_range=True,
    ),
    HardwareProfile(
        name="nvidia-jetson",
        description="NVIDIA Jetson: CUDA/TensorRT execution providers, fp16 on the GPU",
        arch="aarch64",
        requires_accelerators=("nvidia-gpu",),
        runtimes=("onnxruntime",),
        precisions=("fp32", "fp16", "int8"),
        memory_budget_bytes=2048 * MB,
        model_size_budget_bytes=500 * MB,
        threads=4,
        execution_providers=(
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ),
    ),
    HardwareProfile(
        name="int8-npu",
        description="Integer-only NPU (Edge TPU, Ethos-U class): full-int8 LiteRT models only",
        requires_accelerators=("npu",),
        runtimes=("litert",),
        precisions=("int8",),
        memory_budget_bytes=256 * MB,
        model_size_budget_bytes=8 * MB,
        threads=1,
        integer_only=True,
    ),
    HardwareProfile(
        name="generic-cpu",
        description="Any CPU: the fallback when nothing more specific matches",
        runtimes=("onnxruntime", "litert"),
        precisions=("fp32", "int8"),
        memory_budget_bytes=512 * MB,
        model_size_budget_bytes=100 * MB,
        threads=1,
        int8_reduce_range=True,
    ),
)


def builtin_threads(profile: str) -> int | None:
    """The thread count of a built-in profile (None for a user profile the device cannot see)."""
    return next((p.threads for p in BUILTIN_PROFILES if p.name == profile), None)


class ProfileCatalogue:
    """The built-in profiles plus the operator's, looked up by name."""

    def __init__(self, profiles: Iterable[HardwareProfile]) -> None:
        self._profiles: dict[str, HardwareProfile] = {}
        for profile in profiles:
            if profile.name in self._profiles:
                raise InvalidInput(f"hardware profile {profile.name!r} is defined twice")
            self._profiles[profile.name] = profile

    @classmethod
    def load(cls, user_file: Path | None = None) -> ProfileCatalogue:
        extra = load_profiles_file(user_file) if user_file else []
        builtin = [dataclasses.replace(p, builtin=True) for p in BUILTIN_PROFILES]
        return cls([*builtin, *extra])

    def __iter__(self):
        return iter(self._profiles.values())

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def names(self) -> list[str]:
        return list(self._profiles)

    def get(self, name: str) -> HardwareProfile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(self._profiles)
            raise NotFound(f"unknown hardware profile {name!r} (known: {known}, or auto)") from None

    def check_requested(self, name: str) -> None:
        """Raise unless ``name`` is a known profile or ``auto``."""
        if name != AUTO:
            self.get(name)

    def resolve(self, facts: HardwareFacts) -> HardwareProfile:
        """The most specific profile whose requirements ``facts`` meet."""
        candidates = [p for p in self._profiles.values() if p.matches(facts)]
        if not candidates:
            raise NotFound(f"no hardware profile matches a {facts.arch or 'unknown'} device")
        # Stable: among equally specific profiles the catalogue order wins.
        return max(candidates, key=lambda p: p.specificity)


def _profile_from_table(name: str, table: Mapping[str, Any]) -> HardwareProfile:
    def strings(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"profile {name!r}: {key} must be a list of strings")
        return tuple(value)

    runtimes = strings("runtimes") or ("onnxruntime",)
    precisions = strings("precisions") or ("fp32",)
    if unknown := set(runtimes) - RUNTIMES:
        raise InvalidInput(f"profile {name!r}: unknown runtimes {sorted(unknown)}")
    required = strings("requires_runtimes")
    if missing := set(required) - set(runtimes):
        raise InvalidInput(f"profile {name!r}: requires_runtimes {sorted(missing)} not in runtimes")
    if unknown := set(precisions) - PRECISIONS:
        raise InvalidInput(f"profile {name!r}: unknown precisions {sorted(unknown)}")
    try:
        return HardwareProfile(
            name=name,
            description=str(table.get("description", "")),
            arch=str(table.get("arch", "")),
            requires_flags=strings("requires_flags"),
            requires_any_flag=strings("requires_any_flag"),
            requires_accelerators=strings("requires_accelerators"),
            requires_runtimes=required,
            runtimes=runtimes,
            precisions=precisions,
            memory_budget_bytes=int(table.get("memory_budget_mb", 512)) * MB,
            model_size_budget_bytes=int(table.get("model_size_budget_mb", 100)) * MB,
            threads=int(table.get("threads", 1)),
            integer_only=bool(table.get("integer_only", False)),
            int8_reduce_range=bool(table.get("int8_reduce_range", False)),
            execution_providers=strings("execution_providers") or ("CPUExecutionProvider",),
            accuracy_budget_pp=float(table.get("accuracy_budget_pp", 1.0)),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"profile {name!r}: {exc}") from exc


def load_profiles_file(path: Path) -> list[HardwareProfile]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read profiles file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"profiles file {path} is not valid TOML: {exc}") from exc
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise InvalidInput(f"profiles file {path}: [profiles.NAME] tables expected")
    return [_profile_from_table(name, table) for name, table in tables.items()]
