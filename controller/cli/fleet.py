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
WindowOption = typer.Option(600, "--window", min=1, max=7 * 86400, help="Seconds of history.")
SelectorOption = typer.Option([], "--selector", "-l", help="Only devices with label KEY=VALUE.")
MIN_REFRESH_S, MAX_REFRESH_S = 0.5, 300.0
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
            label_selector=parse_labels(selector), window_seconds=window
        )
        return call(conn, stub.FleetStatus, request)
    finally:
        channel.close()


def _opt(has: bool, value: float, digits: int = 4) -> float | None:
    return round(value, digits) if has else None


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


def table_rows(rows: list[dict[str, Any]], now_ms: int) -> list[list[Any]]:
    out = []
    for r in rows:
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
                r["agreement_pairs"],
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
    "pairs",
    "last seen",
]


@app.command()
def status(
    ctx: typer.Context,
    output: OutputFormat = FormatOption,
    window: int = WindowOption,
    selector: list[str] = SelectorOption,
) -> None:
    """Per device: online, variant, frames/s, p50/p95 latency, offload rate, accuracy."""
    with errors_as_exit_codes():
        response = _fetch(ctx, window, selector)
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
    window: int = WindowOption,
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
        table = Table(title=f"EdgeFleet fleet - last {window}s - {note}")
        for header in HEADERS:
            table.add_column(header)
        for row in table_rows(rows, now_ms):
            table.add_row(*[Text(printable(str(c))) for c in row])  # no markup either
        return table

    with errors_as_exit_codes():
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
                        lambda: _fetch(ctx, window, selector), unreachable
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
