"""`edgefleet fleet alerts`, `fleet events` and `fleet drift`: alerts with their evidence, the
fleet's event log, and drift scores per device and cohort (registered on the `fleet` sub-app
by ``register``)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import typer

from controller.cli.context import cli_context
from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json, print_table

FormatOption = typer.Option(OutputFormat.table, "--format", help="table or json")
LimitOption = typer.Option(200, "--limit", min=1, max=10_000, help="At most this many rows.")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")


def parse_since(text: str, now_s: float | None = None) -> int:
    """``10m`` / ``2h`` / ``1d`` ago, or an ISO 8601 time (UTC unless it says), as unix ms."""
    now_s = time.time() if now_s is None else now_s
    text = text.strip()
    m = _AGO.match(text)
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return int((now_s - float(m.group(1)) * scale) * 1000)
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"bad time {text!r} (e.g. 10m, 2h, 1d or 2026-12-03T13:00)"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return max(0, int(at.timestamp() * 1000))


def _clock(unix_ms: int) -> str:
    if not unix_ms:
        return ""
    return dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _stub_call(ctx: typer.Context, method: str, request: Any) -> Any:
    from controller.cli.client import call, open_channel
    from edgefleet.v1 import fleet_pb2_grpc

    conn = cli_context(ctx).connection()
    channel = open_channel(conn)
    try:
        stub = fleet_pb2_grpc.FleetAdminServiceStub(channel)
        return call(conn, getattr(stub, method), request)
    finally:
        channel.close()


def alert_row(a: Any) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "rule": a.rule,
        "subject": a.subject,
        "device_id": a.device_id,
        "severity": a.severity,
        "message": a.message,
        "started_unix_ms": a.started_unix_ms,
        "ended_unix_ms": a.ended_unix_ms or None,
        "active": a.active,
        "evidence": json.loads(a.evidence_json or "{}"),
        "last_evidence": json.loads(a.last_evidence_json or "{}"),
    }


def event_row(e: Any) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "unix_ms": e.unix_ms,
        "kind": e.kind,
        "device_id": e.device_id,
        "subject": e.subject,
        "message": e.message,
        "data": json.loads(e.data_json or "{}"),
    }


def alerts(
    ctx: typer.Context,
    output: OutputFormat = FormatOption,
    include_resolved: bool = typer.Option(
        False, "--all", help="Resolved alerts too (with --since)."
    ),
    since: str = typer.Option("1d", "--since", help="With --all: alerts open since (10m, 2h...)."),
    limit: int = LimitOption,
) -> None:
    """Alerts: active ones (or all with --all), with when they started and ended and why."""
    with errors_as_exit_codes():
        from edgefleet.v1 import fleet_pb2

        since_ms = parse_since(since) if include_resolved else 0
        request = fleet_pb2.ListAlertsRequest(
            include_resolved=include_resolved, since_unix_ms=since_ms, limit=limit
        )
        rows = [alert_row(a) for a in _stub_call(ctx, "ListAlerts", request).alerts]
        if output == OutputFormat.json:
            print_json({"alerts": rows})
            return
        if not rows:
            echo("no alerts" if include_resolved else "no active alerts")
            return
        print_table(
            ["ID", "RULE", "SUBJECT", "SEVERITY", "STARTED (UTC)", "ENDED", "MESSAGE"],
            [
                [r["alert_id"], r["rule"], r["subject"], r["severity"],
                 _clock(r["started_unix_ms"]), _clock(r["ended_unix_ms"] or 0) or "active",
                 r["message"]]
                for r in rows
            ],
        )  # fmt: skip


def events(
    ctx: typer.Context,
    output: OutputFormat = FormatOption,
    since: str = typer.Option("1d", "--since", help="Events since (10m, 2h, 1d or ISO time)."),
    kind: list[str] = typer.Option(
        [], "--kind", help="Only this kind (device.enrolled) or noun (rollout); repeatable."
    ),
    device: str = typer.Option("", "--device", help="Only events of this device (name or id)."),
    limit: int = LimitOption,
) -> None:
    """The fleet's event log, newest first: enrollments, builds, rollouts, alerts, budgets."""
    with errors_as_exit_codes():
        from edgefleet.v1 import fleet_pb2

        request = fleet_pb2.ListEventsRequest(
            since_unix_ms=parse_since(since), kinds=kind, device_id=device, limit=limit
        )
        rows = [event_row(e) for e in _stub_call(ctx, "ListEvents", request).events]
        if output == OutputFormat.json:
            print_json({"events": rows})
            return
        if not rows:
            echo("no events")
            return
        print_table(
            ["TIME (UTC)", "KIND", "DEVICE", "SUBJECT", "MESSAGE"],
            [[_clock(r["unix_ms"]), r["kind"], r["device_id"], r["subject"], r["message"]]
             for r in rows],
        )  # fmt: skip


def _opt(has: bool, value: float) -> float | None:
    return round(value, 4) if has else None


def drift_row(d: Any) -> dict[str, Any]:
    return {
        "kind": d.kind,
        "subject": d.subject,
        "name": d.name,
        "variant_id": d.variant_id,
        "devices": d.devices,
        "frames": d.frames,
        "confidence_frames": d.confidence_frames,
        "psi": _opt(d.has_psi, d.psi),
        "agreement": _opt(d.has_agreement, d.agreement),
        "agreement_ci95": [round(d.agreement_low, 4), round(d.agreement_high, 4)],
        "agreement_pairs": d.agreement_pairs,
        "expected_agreement": _opt(d.has_expected_agreement, d.expected_agreement),
        "offload_budget_fps": round(d.offload_budget_fps, 3),
    }


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def drift(
    ctx: typer.Context,
    output: OutputFormat = FormatOption,
    window: int = typer.Option(
        0, "--window", min=0, max=7 * 86400, help="Seconds of history [the alert window, 60]."
    ),
) -> None:
    """Drift per device and per cohort (devices on one variant): PSI of the confidence
    distribution against the variant's validation one, agreement with the cloud against what
    validation predicts, and the drift-aware offload budget granted."""
    with errors_as_exit_codes():
        from edgefleet.v1 import fleet_pb2

        request = fleet_pb2.FleetDriftRequest(window_seconds=window)
        response = _stub_call(ctx, "FleetDrift", request)
        rows = [drift_row(d) for d in response.scores]
        if output == OutputFormat.json:
            print_json({"window_seconds": response.window_seconds, "scores": rows})
            return
        if not rows:
            echo(f"no reports in the last {response.window_seconds} s")
            return
        print_table(
            ["KIND", "DEVICE / VARIANT", "DEVICES", "FRAMES", "PSI", "AGREEMENT [95% CI]",
             "EXPECTED", "PAIRS", "BUDGET FPS"],
            [
                [r["kind"], r["name"] or r["subject"], r["devices"], r["frames"], _num(r["psi"]),
                 f"{_num(r['agreement'])} [{r['agreement_ci95'][0]:.2f}, "
                 f"{r['agreement_ci95'][1]:.2f}]", _num(r["expected_agreement"]),
                 r["agreement_pairs"], _num(r["offload_budget_fps"], ".1f")]
                for r in rows
            ],
        )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("alerts")(alerts)
    app.command("events")(events)
    app.command("drift")(drift)
