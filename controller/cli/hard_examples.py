"""`edgefleet model hard-examples` and `model retrain --from-fleet`: the fleet's hard frames (the
ones it offloaded, labelled by the cloud model) kept per an opt-in policy and turned into the
next edge version. Registered on the `model` sub-app by ``register(app)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from controller.cli.model_training import stream_training
from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json

RETRAIN_PHASES = ("hard-examples", "data", "teacher", "train", "export", "register")


def register(app: typer.Typer) -> None:
    app.command("hard-examples")(hard_examples)
    app.command("retrain")(retrain)


def parse_label_pairs(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, not {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms else "-"


def policy_dict(response: Any) -> dict[str, Any]:
    from controller.services.hard_example_policy import retention_text

    p, c = response.policy, response.counts
    return {
        "model": p.model,
        "enabled": p.enabled,
        "max_bytes": p.max_bytes,
        "retention_s": p.retention_s,
        "retention": retention_text(p.retention_s),
        "device_ids": list(p.device_ids),
        "device_labels": dict(p.device_labels),
        "created_unix_ms": p.created_unix_ms,
        "updated_unix_ms": p.updated_unix_ms,
        "ceiling_bytes": response.ceiling_bytes,
        "stored": {
            "frames": c.frames,
            "bytes": c.bytes,
            "oldest_unix_ms": c.oldest_unix_ms,
            "newest_unix_ms": c.newest_unix_ms,
            "dropped_cap": c.dropped_cap,
            "dropped_retention": c.dropped_retention,
            "dropped_busy": c.dropped_busy,
        },
    }


def summary_line(d: dict[str, Any]) -> str:
    """One line: the policy and what it has stored (`model variants` prints it too)."""
    s = d["stored"]
    stored = f"{s['frames']} frames stored ({_size(s['bytes'])})"
    if not d["enabled"]:
        return f"hard examples: off (opt-in: `model hard-examples {d['model']} --enable`); {stored}"
    who = []
    if d["device_ids"]:
        who.append(f"devices {','.join(d['device_ids'])}")
    if d["device_labels"]:
        who.append("labels " + ",".join(f"{k}={v}" for k, v in d["device_labels"].items()))
    return (
        f"hard examples: on, cap {_size(d['max_bytes'])}, retention {d['retention']}, from "
        f"{' or '.join(who) or 'every device'}; {stored}"
    )


def fetch_policy(conn: Any, stub: Any, model: str) -> dict[str, Any]:
    from controller.cli.client import call
    from edgefleet.v1 import models_pb2

    request = models_pb2.GetHardExamplePolicyRequest(model=model)
    return policy_dict(call(conn, stub.GetHardExamplePolicy, request))


def hard_examples(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The edge model's name."),
    enable: bool = typer.Option(False, "--enable", help="Keep this model's offloaded frames."),
    disable: bool = typer.Option(False, "--disable", help="Keep no more (stored ones stay)."),
    max_mb: float | None = typer.Option(None, "--max-mb", help="Size cap (oldest dropped)."),
    retention: str | None = typer.Option(
        None, "--retention", help="Keep frames this long: 12h, 7d, 2w; 0 = until the cap."
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="Only these devices (names or ids, a,b); '' = every device."
    ),
    device_label: list[str] = typer.Option(
        [], "--device-label", help="Only devices with this label K=V (repeatable)."
    ),
    any_label: bool = typer.Option(False, "--any-label", help="Clear the label filter."),
    purge: bool = typer.Option(False, "--purge", help="Delete every frame stored so far."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Show or change the model's hard-example policy (no option: show).

    Opt-in per edge model: the controller keeps the frames devices offload (with the cloud
    model's answers as labels) only for a model whose policy is enabled, and only from the
    devices it names (by id, or by label; neither: every device). The oldest go past the cap
    or the retention, and past the controller's --hard-examples-max-bytes ceiling."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from controller.cli.models import _stub
        from controller.services.hard_example_policy import parse_retention
        from edgefleet.errors import InvalidInput
        from edgefleet.v1 import models_pb2

        if enable and disable:
            raise InvalidInput("--enable and --disable together")
        if max_mb is not None and max_mb <= 0:
            raise InvalidInput(f"--max-mb must be positive, not {max_mb:g}")
        retention_s = parse_retention(retention) if retention is not None else None
        labels = parse_label_pairs(device_label)
        if labels and any_label:
            raise InvalidInput("--device-label and --any-label together")
        changing = (
            enable or disable or purge or any_label or max_mb is not None
            or retention_s is not None or devices is not None or bool(labels)
        )  # fmt: skip
        conn, stub = _stub(ctx)
        if not changing:
            data = fetch_policy(conn, stub, model)
        else:
            request = models_pb2.SetHardExamplePolicyRequest(model=model, purge=purge)
            if enable or disable:
                request.enabled = enable
            if max_mb is not None:
                request.max_bytes = int(max_mb * (1 << 20))
            if retention_s is not None:
                request.retention_s = retention_s
            if devices is not None:
                request.set_devices = True
                request.devices.extend(d.strip() for d in devices.split(",") if d.strip())
            if labels or any_label:
                request.set_device_labels = True
                request.device_labels.update(labels)
            data = policy_dict(call(conn, stub.SetHardExamplePolicy, request))
        if output is OutputFormat.json:
            print_json(data)
            return
        echo(f"{model}: {summary_line(data)}")
        s = data["stored"]
        if s["frames"]:
            echo(f"  stored from {_when(s['oldest_unix_ms'])} to {_when(s['newest_unix_ms'])} UTC")
        dropped = {k: s[f"dropped_{k}"] for k in ("cap", "retention", "busy") if s[f"dropped_{k}"]}
        if dropped:
            echo("  dropped since the controller started: "
                 + ", ".join(f"{v} ({k})" for k, v in dropped.items()))  # fmt: skip
        if data["ceiling_bytes"]:
            echo(f"  controller ceiling (all models): {_size(data['ceiling_bytes'])}")


def retrain(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The edge model's name."),
    from_fleet: bool = typer.Option(
        False, "--from-fleet", help="Train on the fleet's stored hard frames (cloud labels)."
    ),
    since: str = typer.Option("", "--since", help="Only frames stored since: 2h, 1d or ISO."),
    data: Path | None = typer.Option(
        None, "--data", help="The original training frames (.npz x, y or IDX dir), mixed in."
    ),
    epochs: int = typer.Option(10, "--epochs", min=1, max=1000),
    batch_size: int = typer.Option(128, "--batch-size", min=1, max=1024),
    max_minutes: float = typer.Option(60.0, "--max-minutes", help="Wall-time bound of the run."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Distil the next version of MODEL from its cloud model on the fleet's hard frames.

    The frames the model's hard-example policy kept (labelled by the cloud model), mixed with
    --data, train a student that starts from the current version's weights; the new version
    is registered, then built and rolled out the normal way (printed as the next steps)."""
    with errors_as_exit_codes():
        from controller.cli.fleet_alerts import parse_since
        from controller.cli.models import _stub
        from edgefleet.errors import InvalidInput
        from edgefleet.v1 import models_pb2

        if not from_fleet:
            raise InvalidInput("retrain needs a source of frames: --from-fleet")
        if max_minutes <= 0:
            raise InvalidInput("--max-minutes must be positive")
        since_ms = parse_since(since) if since else 0
        conn, stub = _stub(ctx)
        digest = ""
        if data is not None:
            from controller.cli.training_data import upload_training_frames

            digest = upload_training_frames(conn, stub, data)
        request = models_pb2.RetrainModelRequest(
            model=model, since_unix_ms=since_ms, data_sha256=digest, epochs=epochs,
            batch_size=batch_size, max_seconds=max_minutes * 60,
        )  # fmt: skip
        report = stream_training(
            conn, stub.RetrainModel, request, RETRAIN_PHASES, max_minutes * 60,
            quiet=output is OutputFormat.json,
        )  # fmt: skip
        if output is OutputFormat.json:
            print_json(report)
            return
        print_retrain_summary(report)


def print_retrain_summary(r: dict[str, Any]) -> None:
    h = r["hard_frames"]
    devices = ", ".join(f"{k} {v}" for k, v in sorted(h["devices"].items()))
    echo(
        f"retrained {r['model']['ref']} from {r['started_from']} (teacher {r['teacher']}) on "
        f"{h['frames']} hard frames of the fleet ({devices})"
        + (f", {h['skipped']} of another shape skipped" if h["skipped"] else "")
    )
    echo(
        f"  validation accuracy: student {r['student_accuracy']:.4f}, teacher "
        f"{r['teacher_accuracy']:.4f} ({r['validation_frames']} frames)"
    )
    copies = r["trained_frames"] - r["train_frames"]
    echo(
        f"  trained on {r['train_frames'] - h['frames']} original + {h['frames']} hard frames"
        + (f" + {copies} augmented copies" if copies else "")
        + f", {r['fit']['epochs']} epochs; {r['latency_ms']:.3f} ms/frame (ORT, 1 thread, "
        "batch 1)"
    )
    for note in r.get("retrain_notes", []):
        echo(f"  note: {note}")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in r["phase_seconds"].items())
    echo(f"  wall time {r['wall_seconds']:.1f} s: {phases}")
    echo("next steps:")
    for step in r["next_steps"]:
        echo(f"  {step}")
