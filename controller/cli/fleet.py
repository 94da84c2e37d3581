"""`edgefleet fleet ...`: the fleet's live inference: throughput, latency, offload, accuracy."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from controller.cli import fleet_alerts
from controller.cli.context import cli_context, parse_labels
from edgefleet.cli import (
    OutputFormat,
    echo,
    errors_as_exit_codes,
    print_json,
    print_table,
    printable,
)
from edgefleet.errors import Unavailable
from edgefleet.retry import Backoff, RetryHook, retrying

app = typer.Typer(
    help="Watch fleet inference: latency, offload and accuracy.", no_args_is_help=True
)

FormatOption = typer.Option(OutputFormat.table, "--format", help="table or json")
MAX_WINDOW_S = 7 * 86400
WindowOption = typer.Option(
    "60s", "--window", help="History to read: 60s, 10m, 1h, 1d or plain seconds (at most 7d)."
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> int:
    """``60s``/``10m``/``1h``/``1d``/``90`` -> seconds; InvalidInput otherwise."""
    from edgefleet.errors import InvalidInput

    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _UNITS else "s"
    number = raw[:-1] if raw[-1:] in _UNITS else raw
    try:
        seconds = int(float(number) * _UNITS[unit])
    except ValueError:
        raise InvalidInput(f"--window {text!r}: give e.g. 60s, 10m or 1h") from None
    if not 1 <= seconds <= MAX_WINDOW_S:
        raise InvalidInput(f"--window {text!r}: must be between 1s and 7d")
    return seconds


SelectorOption = typer.Option([], "--selector", "-l", help="Only devices with label KEY=VALUE.")
MIN_REFRESH_S, MAX_REFRESH_S = 0.5, 300.0
FETCH_PAGE = 1000  # devices per FleetStatus call (the answer is paged)
WATCH_BACKOFF = Backoff(first_s=1.0, max_s=30.0)  # `fleet watch` while the controller is away
T = TypeVar("T")


def fetch_until_answered(
    fetch: Callable[[], T], on_retry: RetryHook, sleep: Callable[[float], None] = time.sleep
) -> tuple[T, int]:
    """``fetch()``, tried again for as long as the controller is unreachable (``Unavailable``;
    any other error is raised), waiting 1 s, 2 s, 4 s ... up to 30 s and calling
    ``on_retry(error, delay, failures)`` before each wait. Returns the answer and how many
    tries failed before it."""
    retry = retrying(
        what="fleet watch",
        transient=lambda exc: isinstance(exc, Unavailable),
        attempts=None,
        backoff=WATCH_BACKOFF,
        on_retry=on_retry,
        sleep=sleep,
    )
    answer = retry(fetch)
    return answer, int(retry.statistics["attempt_number"]) - 1


def _fetch(ctx: typer.Context, window: int, selector: list[str]) -> Any:
    from controller.cli.client import call, open_channel
    from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc

    conn = cli_context(ctx).connection()
    channel = open_channel(conn)
    try:
        stub = fleet_pb2_grpc.FleetAdminServiceStub(channel)
        request = fleet_pb2.FleetStatusRequest(
            label_selector=parse_labels(selector), window_seconds=window, page_size=FETCH_PAGE
        )
        answer = call(conn, stub.FleetStatus, request)
        while answer.next_page_token:  # page by page: no single answer holds a big fleet
            request.page_token = answer.next_page_token
            page = call(conn, stub.FleetStatus, request)
            answer.devices.extend(page.devices)
            answer.next_page_token = page.next_page_token
        return answer
    finally:
        channel.close()


def _opt(has: bool, value: float, digits: int = 4) -> float | None:
    return round(value, digits) if has else None


def _evidence(d: Any) -> dict[str, Any]:
    import json

    try:
        data = json.loads(d.accuracy_evidence_json or "{}")
    except ValueError:
        data = {}
    return {
        "method": d.accuracy_method or None,
        "why": d.accuracy_why,
        "audit_pairs": d.audit_pairs,
        "offload_pairs": d.offload_pairs,
        "labelled_pairs": d.labelled_pairs,
        "audit_skipped_busy": d.audit_skipped_busy,
        "audit_fraction": round(d.audit_fraction, 4) if d.audit_fraction else None,
        "cbpe": _opt(d.has_cbpe, d.cbpe_accuracy),
        "cbpe_ci95": [round(d.cbpe_low, 4), round(d.cbpe_high, 4)] if d.has_cbpe else None,
        "frames_share": {k: round(v, 4) for k, v in (data.get("frames_share") or {}).items()},
        "variance_share": {k: round(v, 4) for k, v in (data.get("variance_share") or {}).items()},
        "validation_frames": data.get("validation_frames", 0),
    }


def device_row(d: Any) -> dict[str, Any]:
    """One device as plain data (the JSON output; the table shows the same)."""
    return {
        "device_id": d.device_id,
        "name": d.name,
        "online": d.online,
        "model": d.model,
        "variant_id": d.variant_id,
        "frames": d.frames,
        "frames_per_second": round(d.frames_per_second, 3),
        "p50_latency_ms": _opt(d.has_latency, d.p50_latency_ms, 3),
        "p95_latency_ms": _opt(d.has_latency, d.p95_latency_ms, 3),
        "offload_rate": _opt(d.frames > 0, d.offload_rate),
        "offload_failure_rate": _opt(d.frames > 0, d.offload_failure_rate),
        "accuracy": _opt(d.has_accuracy, d.accuracy),
        "accuracy_ci95": [round(d.accuracy_low, 4), round(d.accuracy_high, 4)],
        "accuracy_evidence": _evidence(d),
        "agreement": _opt(d.agreement_pairs > 0, d.agreement),
        "agreement_pairs": d.agreement_pairs,
        "cloud_pairs": d.cloud_pairs,
        "bad_frames": d.bad_frames,
        "skipped_frames": d.skipped_frames,
        "reports": d.reports,
        "reports_dropped": d.reports_dropped,
        "last_seen_unix_ms": d.last_seen_unix_ms,
    }


def _ago(unix_ms: int, now_ms: int) -> str:
    if not unix_ms:
        return "never"
    seconds = max(0, (now_ms - unix_ms) // 1000)
    if seconds < 120:
        return f"{seconds}s ago"
    return dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _shares(shares: dict[str, float]) -> str:
    """``audit 80% table 15%``: where the interval's width comes from (largest first)."""
    kept = sorted(((v, k) for k, v in shares.items() if v >= 0.05), reverse=True)
    return " ".join(f"{k} {v:.0%}" for v, k in kept) or "-"


def table_rows(rows: list[dict[str, Any]], now_ms: int) -> list[list[Any]]:
    out = []
    for r in rows:
        ev = r["accuracy_evidence"]
        lo, hi = r["accuracy_ci95"]
        accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.1%} [{lo:.1%}, {hi:.1%}]"
        out.append(
            [
                r["name"],
                "yes" if r["online"] else "no",
                r["variant_id"] or "-",
                r["frames"],
                _fmt(r["frames_per_second"] if r["frames"] else None, ".1f"),
                _fmt(r["p50_latency_ms"], ".1f"),
                _fmt(r["p95_latency_ms"], ".1f"),
                _fmt(r["offload_rate"], ".1%"),
                accuracy,
                _fmt(ev["cbpe"], ".1%"),
                f"{ev['audit_pairs']}/{ev['offload_pairs']}/{ev['labelled_pairs']}",
                _shares(ev["variance_share"]),
                _ago(r["last_seen_unix_ms"], now_ms),
            ]
        )
    return out


HEADERS = [
    "name",
    "online",
    "variant",
    "frames",
    "fps",
    "p50 ms",
    "p95 ms",
    "offload",
    "accuracy [95% CI]",
    "cbpe",
    "pairs a/o/l",
    "uncertainty from",
    "last seen",
]


@app.command()
def status(
    ctx: typer.Context,
    output: OutputFormat = FormatOption,
    window: str = WindowOption,
    selector: list[str] = SelectorOption,
) -> None:
    """Per device: online, variant, frames/s, p50/p95 latency, offload rate, and the final
    answers' accuracy with its 95% interval: the cloud's own errors on hard frames corrected
    for with the build-time table, confident frames from the audit pairs, operator labels
    where there are any. Beside it CBPE (calibrated confidence only) and the evidence: audit,
    offload and labelled pairs, and which source the interval's width comes from."""
    with errors_as_exit_codes():
        response = _fetch(ctx, parse_window(window), selector)
        rows = [device_row(d) for d in response.devices]
        if output is OutputFormat.json:
            print_json({"window_seconds": response.window_seconds, "devices": rows})
        else:
            print_table(HEADERS, table_rows(rows, response.unix_ms))


@app.command()
def watch(
    ctx: typer.Context,
    interval: float = typer.Option(
        2.0, "--interval", min=MIN_REFRESH_S, max=MAX_REFRESH_S, help="Seconds between refreshes."
    ),
    window: str = WindowOption,
    selector: list[str] = SelectorOption,
    count: int = typer.Option(0, "--count", min=0, help="Stop after N refreshes (0 = Ctrl-C)."),
) -> None:
    """Refresh `fleet status` in the terminal until Ctrl-C.

    While the controller is unreachable (restarting, say) it says so and retries, waiting
    1 s, 2 s, 4 s ... up to 30 s between tries, until the controller answers again."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    def render(rows: list[dict[str, Any]], now_ms: int, note: str) -> Table:
        table = Table(title=f"EdgeFleet fleet - last {window} - {note}")
        for header in HEADERS:
            table.add_column(header)
        for row in table_rows(rows, now_ms):
            table.add_row(*[Text(printable(str(c))) for c in row])  # no markup either
        return table

    with errors_as_exit_codes():
        seconds = parse_window(window)
        cli_context(ctx).connection()  # a missing address or token fails now, not in the loop
        shown = 0
        rows: list[dict[str, Any]] = []
        now_ms = 0
        try:
            with Live(console=Console(), auto_refresh=False) as live:

                def unreachable(exc: BaseException, delay: float, failures: int) -> None:
                    echo(f"controller unreachable, retrying in {delay:.0f} s ({exc})", err=True)
                    if failures == 1:
                        note = f"controller unreachable since {time.strftime('%H:%M:%S')}"
                        live.update(render(rows, now_ms, note), refresh=True)

                while True:
                    response, failures = fetch_until_answered(
                        lambda: _fetch(ctx, seconds, selector), unreachable
                    )
                    if failures:
                        echo(f"controller reachable again after {failures} tries", err=True)
                    rows = [device_row(d) for d in response.devices]
                    now_ms = response.unix_ms
                    stamp = time.strftime("%H:%M:%S")
                    live.update(render(rows, now_ms, stamp), refresh=True)
                    shown += 1
                    if count and shown >= count:
                        break
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass


fleet_alerts.register(app)  # `fleet alerts`, `fleet events` (controller/cli/fleet_alerts.py)


def _fleet_stub(ctx: typer.Context) -> tuple[Any, Any, Any]:
    from controller.cli.client import open_channel
    from edgefleet.v1 import fleet_pb2_grpc

    conn = cli_context(ctx).connection()
    channel = open_channel(conn)
    return conn, channel, fleet_pb2_grpc.FleetAdminServiceStub(channel)


def frame_row(f: Any) -> dict[str, Any]:
    return {
        "frame_key": f.frame_key,
        "device_id": f.device_id,
        "model": f.model,
        "edge_variant_id": f.edge_variant_id,
        "seen_unix_ms": f.seen_unix_ms,
        "kind": "audit" if f.audit else "offloaded",
        "edge": {"label": f.edge_label, "name": f.edge_label_name,
                 "confidence": round(f.edge_confidence, 4)},
        "cloud": {"label": f.cloud_label, "name": f.cloud_label_name,
                  "confidence": round(f.cloud_confidence, 4)},
        "label": ({"label": f.label, "name": f.label_name} if f.labelled else None),
        "labelled_unix_ms": f.labelled_unix_ms or None,
    }  # fmt: skip


def _answer(a: dict[str, Any]) -> str:
    return f"{a['name'] or a['label']} ({a['confidence']:.2f})"


@app.command()
def frames(
    ctx: typer.Context,
    output: OutputFormat = FormatOption,
    labelled: bool = typer.Option(False, "--labelled", help="Frames already labelled instead."),
    device: str = typer.Option("", "--device", help="Only this device's frames."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
) -> None:
    """Frames the cloud answered that wait for a true label (`fleet label KEY LABEL`), with
    device, time, and the edge's and the cloud's answers; newest first."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import fleet_pb2

        conn, channel, stub = _fleet_stub(ctx)
        try:
            request = fleet_pb2.ListFramesRequest(labelled=labelled, device_id=device, limit=limit)
            response = call(conn, stub.ListFrames, request)
        finally:
            channel.close()
        rows = [frame_row(f) for f in response.frames]
        if output is OutputFormat.json:
            print_json({"frames": rows})
            return
        now_ms = int(time.time() * 1000)
        print_table(
            ["frame", "device", "seen", "kind", "edge", "cloud", "label"],
            [
                [r["frame_key"], r["device_id"], _ago(r["seen_unix_ms"], now_ms), r["kind"],
                 _answer(r["edge"]), _answer(r["cloud"]),
                 (r["label"]["name"] or r["label"]["label"]) if r["label"] else "-"]
                for r in rows
            ],
        )  # fmt: skip


@app.command()
def label(
    ctx: typer.Context,
    frame_key: str = typer.Argument(..., help="DEVICE/FRAME_ID, as `fleet frames` lists it."),
    true_label: str = typer.Argument(..., metavar="LABEL", help="Class name or index."),
    output: OutputFormat = FormatOption,
) -> None:
    """Give a frame its true label: the accuracy estimate uses labelled frames (the cloud's
    accuracy on hard frames, the edge's on audited ones) beside the build-time table."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import fleet_pb2

        conn, channel, stub = _fleet_stub(ctx)
        try:
            request = fleet_pb2.LabelFrameRequest(frame_key=frame_key, label=true_label)
            response = call(conn, stub.LabelFrame, request)
        finally:
            channel.close()
        row = frame_row(response.frame)
        if output is OutputFormat.json:
            print_json(row)
            return
        lab = row["label"] or {}
        echo(
            f"{row['frame_key']}: labelled {lab.get('name') or lab.get('label')} "
            f"(edge said {_answer(row['edge'])}, cloud {_answer(row['cloud'])})"
        )
