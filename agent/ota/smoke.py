"""Default smoke test for a freshly installed variant: it loads, answers, and answers sanely."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.ota.errors import SmokeTestFailed


@dataclass(frozen=True)
class SmokeRun:
    """What running sample frames through a variant produced."""

    outputs: Sequence[Any]  # one array per sample frame
    latencies_ms: Sequence[float]  # one per sample frame


def make_smoke_test(
    load_and_run: Callable[[Path], SmokeRun],
    *,
    output_shape: Sequence[int] | None = None,  # -1 matches any size on that axis
    latency_budget_ms: float | None = None,
) -> Callable[[Path], None]:
    """Build ``smoke_test(variant_dir)`` that raises ``SmokeTestFailed`` with the reason."""

    def smoke_test(variant_dir: Path) -> None:
        try:
            run = load_and_run(variant_dir)
        except Exception as exc:  # whatever the runtime raises, the variant is unusable
            raise SmokeTestFailed(f"variant did not run: {type(exc).__name__}: {exc}") from exc
        if not run.outputs:
            raise SmokeTestFailed("variant produced no outputs")
        for i, out in enumerate(run.outputs):
            arr = np.asarray(out)
            if not np.issubdtype(arr.dtype, np.number):
                raise SmokeTestFailed(f"frame {i}: output dtype {arr.dtype} is not numeric")
            if not np.all(np.isfinite(arr)):
                raise SmokeTestFailed(f"frame {i}: output has NaN or infinite values")
            if output_shape is not None and not _shape_matches(arr.shape, output_shape):
                raise SmokeTestFailed(
                    f"frame {i}: output shape {arr.shape} != {tuple(output_shape)}"
                )
        if latency_budget_ms is not None and run.latencies_ms:
            worst = sorted(run.latencies_ms)[max(math.ceil(0.95 * len(run.latencies_ms)) - 1, 0)]
            if worst > latency_budget_ms:
                raise SmokeTestFailed(
                    f"p95 latency {worst:.1f} ms > budget {latency_budget_ms:.1f} ms"
                )

    return smoke_test


def _shape_matches(actual: tuple[int, ...], expected: Sequence[int]) -> bool:
    return len(actual) == len(expected) and all(
        e in (-1, a) for a, e in zip(actual, expected, strict=True)
    )
