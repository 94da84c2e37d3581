"""A cloud model's serving plan (ModelVersion.serving_plan) for `model list` / `model variants`."""

from __future__ import annotations

from typing import Any

from edgefleet.cli import echo, print_table


def serving_plan_dict(plan: Any) -> dict[str, Any]:
    """ModelVersion.serving_plan as JSON-shaped fields (None: no load test was run)."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(
        plan, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    data["load"] = data.get("load") if plan.HasField("load") else None
    return data


def print_serving_plan(plan: dict[str, Any]) -> None:
    """How the controller serves this cloud model, and the figures it chose from."""
    echo(f"serving plan: {plan['summary']}")
    echo(f"    {plan['reason']}")
    if plan["batches"]:
        print_table(
            ["batch", "ms a call", "p95 ms", "frames/s", "x batch 1", "interval", "rounds"],
            [
                [
                    b["batch_size"],
                    f"{b['median_ms']:.4g}",
                    f"{b['p95_ms']:.4g}",
                    f"{b['frames_per_s']:.0f}",
                    f"{b['gain']:.2f}",
                    f"{b['gain_lo']:.2f}..{b['gain_hi']:.2f}",
                    b["rounds"],
                ]
                for b in plan["batches"]
            ],
        )
    if load := plan["load"]:
        echo(
            f"    under load ({load['clients']} callers, batch <= {load['batch_size']}): batcher "
            f"{load['batched_frames_per_s']:.0f} frames/s vs direct "
            f"{load['direct_frames_per_s']:.0f}, {load['gain']:.2f}x "
            f"[{load['gain_lo']:.2f}..{load['gain_hi']:.2f}], p95 {load['p95_ratio']:.2f}x"
        )
