"""`edgefleet-agent bench`: measure the controller's candidate variants on this device.

Each candidate is fetched through ``TrustedUpdater`` (signed TUF metadata, hash checked while
streaming), written as a variant directory whose ``variant.json`` comes from the verified
target's custom fields, loaded with ``agent.runtime.load_variant`` at the profile's thread
count and timed at batch 1 after a warm-up. Results go back with ``ReportBenchmarks``.
The trust root is the ``root.json`` pinned in ``<data_dir>/tuf/`` at enrollment.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.ota.verify import NoTrustedRoot
from agent.updates_client import UpdateClient
from edgefleet.modelmeta import METADATA_FILE, VariantMetadata
from edgefleet.updates import TrustedUpdater
from edgefleet.v1 import updates_pb2

log = logging.getLogger(__name__)
_META_FIELDS = {f.name for f in dataclasses.fields(VariantMetadata)}


@dataclass(frozen=True)
class BenchOutcome:
    variant_id: str
    ok: bool
    median_ms: float = 0.0
    p95_ms: float = 0.0
    error: str = ""


def trusted_updater(data_dir: Path, client: UpdateClient) -> TrustedUpdater:
    """A TrustedUpdater anchored in the root pinned in the data dir at enrollment."""
    meta_dir = data_dir / "tuf"
    if not (meta_dir / "root.json").exists():
        raise NoTrustedRoot(f"no TUF root pinned at enrollment in {meta_dir}: re-enroll")
    return TrustedUpdater(meta_dir, client.transport)


def time_variant(directory: Path, threads: int, warmup: int, runs: int) -> tuple[float, float]:
    from agent.runtime import load_variant

    model = load_variant(directory, threads=threads)
    frame_shape = (*model.metadata.preprocessing.size, model.metadata.preprocessing.channels)
    frame = np.random.default_rng(0).integers(0, 256, frame_shape, dtype=np.uint8)
    tensor = model.preprocessor(frame)
    for _ in range(warmup):
        model.run(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(tensor)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times)), float(np.percentile(times, 95))


def run_bench(
    data_dir: Path,
    client: UpdateClient,
    profile: str,
    *,
    model: str = "",
    warmup: int = 5,
    runs: int = 30,
) -> tuple[list[BenchOutcome], list[str]]:
    """Measure every candidate; returns the outcomes and the reselected model versions."""
    listing = client.bench_candidates(model)
    updater = trusted_updater(data_dir, client)
    updater.refresh()
    work = data_dir / "bench"
    outcomes = []
    for c in listing.candidates:
        vdir = work / c.variant_id.replace(":", "_")
        try:
            target = updater.get_target(c.target_path, profile, variant_id=c.variant_id)
            meta = {k: v for k, v in target.custom.items() if k in _META_FIELDS}
            metadata = VariantMetadata.from_dict(meta)
            updater.download_target(target, vdir / metadata.file)
            (vdir / METADATA_FILE).write_text(metadata.to_json())
            median, p95 = time_variant(vdir, listing.threads or 1, warmup, runs)
            outcomes.append(BenchOutcome(c.variant_id, True, median, p95))
            log.info("bench %s: median %.3f ms, p95 %.3f ms", c.variant_id, median, p95)
        except Exception as exc:  # one variant that will not run must not stop the others
            log.warning("bench %s failed: %s", c.variant_id, exc)
            outcomes.append(BenchOutcome(c.variant_id, False, error=f"{type(exc).__name__}: {exc}"))
        finally:
            shutil.rmtree(vdir, ignore_errors=True)
    reselected: list[str] = []
    if outcomes:
        response = client.report_benchmarks(
            [
                updates_pb2.BenchResult(
                    variant_id=o.variant_id,
                    ok=o.ok,
                    latency_median_ms=o.median_ms,
                    latency_p95_ms=o.p95_ms,
                    error=o.error[:1000],
                )
                for o in outcomes
            ]
        )
        reselected = list(response.reselected)
    return outcomes, reselected
