"""Hardware facts an agent reports about its machine (the domain twin of the proto message)."""

from __future__ import annotations

from dataclasses import dataclass, field

# CPU flags worth reporting: they decide which int8 kernels are fast.
RELEVANT_CPU_FLAGS = frozenset(
    {
        "sse4_1",
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "amx_int8",
        "amx_bf16",
        "neon",
        "asimd",
        "asimddp",
        "asimdhp",
        "i8mm",
        "bf16",
        "sve",
        "sve2",
    }
)


@dataclass(frozen=True)
class HardwareFacts:
    cpu_model: str = ""
    arch: str = ""
    cpu_flags: tuple[str, ...] = ()
    cores: int = 0
    ram_bytes: int = 0
    runtimes: tuple[str, ...] = ()
    onnx_execution_providers: tuple[str, ...] = ()
    os: str = ""
    hostname: str = ""
    accelerators: tuple[str, ...] = field(default=())

    def has_flag(self, flag: str) -> bool:
        return flag in self.cpu_flags
