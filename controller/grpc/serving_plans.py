"""ServingPlan (controller.serving.plan) <-> its proto, for ModelVersion.serving_plan."""

from __future__ import annotations

import statistics

from controller.serving.plan import ServingPlan
from edgefleet.v1 import models_pb2


def plan_to_proto(plan: ServingPlan, edge_model: str = "") -> models_pb2.ServingPlan:
    out = models_pb2.ServingPlan(
        max_batch_size=plan.max_batch_size,
        max_queue_delay_ms=plan.max_queue_delay_ms,
        source=plan.source,
        reason=plan.reason,
        summary=plan.summary(),
        edge_model=edge_model,
    )
    for m in plan.measurements:
        lo, hi = m.gain_interval
        out.batches.add(
            batch_size=m.batch_size,
            median_ms=m.median_ms,
            p95_ms=m.p95_ms,
            frames_per_s=m.frames_per_s,
            gain=m.gain,
            gain_lo=lo,
            gain_hi=hi,
            rounds=len(m.round_ratios),
        )
    if (load := plan.load) is not None and load.rounds:
        gain, lo, hi = load.gain
        out.load.CopyFrom(
            models_pb2.LoadFigures(
                batch_size=load.batch_size,
                clients=load.clients,
                direct_frames_per_s=statistics.median(r.direct_fps for r in load.rounds),
                batched_frames_per_s=statistics.median(r.batched_fps for r in load.rounds),
                gain=gain,
                gain_lo=lo,
                gain_hi=hi,
                p95_ratio=load.p95_ratio,
                rounds=len(load.rounds),
            )
        )
    return out
