"""`edgefleet rollout ...`: start staged OTA rollouts, watch them, steer them."""

from __future__ import annotations

import json
import re
from typing import Any

import typer

from controller.cli.context import cli_context
from controller.rollout.gates import DEFAULT_GATES
from controller.rollout.metrics import GATE_METRICS
from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json, print_table

app = typer.Typer(help="Staged over-the-air model rollouts with health gates.",
                  no_args_is_help=True)  # fmt: skip
FormatOption = typer.Option(OutputFormat.table, "--format", help="table or json")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_GATE_EPILOG = "\n\n".join(
    [
        "Gates: --gate 'METRIC OP RIGHT', OP one of <= < >= >, RIGHT one of NUMBER, baseline, "
        "NUMBER * baseline, baseline +/- NUMBER. Default: " + "; ".join(DEFAULT_GATES) + ".",
        "Metrics:",
        *(f"  {m.name}: {m.description}" for m in GATE_METRICS.values()),
        "An interval metric passes only when its whole 95% interval satisfies the gate, fails "
        "only when none of it does, and otherwise waits for more evidence. There is no drift "
        "score: the controller keeps no confidence histograms to compute one.",
        "A gate relative to the baseline passes as 'not applicable' (and says so in rollout "
        "status) when there is nothing to compare with: on a first install, or when the "
        "baseline cohort (control devices, else the canary devices before the rollout) has "
        "reported telemetry without that metric, e.g. no agreement when there was no cloud "
        "model. A baseline that has not reported yet makes the gate wait.",
        "Gate timeout: gates wait for data at most --gate-timeout (default 1h) after each "
        "stage's soak (time paused does not count). Then the rollout halts with a message "
        "naming the gates still waiting; it does not roll back by itself, since missing data "
        "is no evidence of harm: run rollout rollback or abort.",
        "Abort stops the rollout and withdraws the assignment of every device that has not "
        "installed yet (its desired state goes back to what it ran before, or to none); "
        "devices that already installed keep the new variant: rollout rollback reverts them.",
    ]
)


def parse_duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise typer.BadParameter(f"bad duration {text!r} (e.g. 30s, 10m, 1h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def parse_stages(text: str) -> list[float]:
    try:
        return [float(s.strip().rstrip("%")) / 100 for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"bad stages {text!r} (e.g. 5%,25%,100%)") from exc


def _stub(ctx: typer.Context) -> Any:
    from controller.cli.client import open_channel
    from edgefleet.v1 import rollouts_pb2_grpc

    conn = cli_context(ctx).connection()
    return conn, rollouts_pb2_grpc.RolloutAdminServiceStub(open_channel(conn))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    print_table(cols, [[r[c] for c in cols] for r in rows])


def _summary(r: Any) -> dict[str, Any]:
    return {
        "id": r.rollout_id,
        "model": f"{r.model}:{r.version}",
        "phase": r.phase,
        "stage": f"{r.stage}/{r.stages}",
        "devices": r.devices,
        "healthy": r.healthy,
    }


@app.command(epilog=_GATE_EPILOG)
def start(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL:VERSION"),
    target: str = typer.Option(
        "",
        "--target",
        help="Label selector, requirements ANDed: key=v, key!=v, key in (a,b), "
        "key notin (a,b), key (exists), !key (absent); e.g. 'site in (lab,edge),!retired'.",
    ),
    stages: str = typer.Option("5%,25%,100%", "--stages", help="Cumulative stage sizes."),
    min_devices: int = typer.Option(1, "--min-devices", min=1),
    soak: str = typer.Option("10m", "--soak", help="Soak per stage before gates: 30s, 10m..."),
    gate: list[str] = typer.Option(
        [], "--gate", help="Gate expression (repeatable); metrics listed below."
    ),
    max_downloads: int = typer.Option(10, "--max-concurrent-downloads", min=1),
    min_samples: int = typer.Option(0, "--min-samples", min=0, help="Frames per cohort."),
    gate_timeout: str = typer.Option(
        "1h",
        "--gate-timeout",
        help="Longest the gates wait for data after a stage's soak; then the rollout halts.",
    ),
    no_auto_rollback: bool = typer.Option(False, "--no-auto-rollback"),
    output: OutputFormat = FormatOption,
) -> None:
    """Start a staged rollout of MODEL:VERSION to the devices matching --target."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import rollouts_pb2

        name, _, version = model.rpartition(":")
        if not name or not version.isdigit():
            raise typer.BadParameter("expected MODEL:VERSION, e.g. digits:2")
        from controller.rollout.selector import parse_selector

        parse_selector(target)  # a bad selector fails here, before any connection
        timeout_s = parse_duration(gate_timeout)
        if timeout_s <= 0:
            raise typer.BadParameter(f"--gate-timeout must be > 0, not {gate_timeout!r}")
        conn, stub = _stub(ctx)
        r = call(conn, stub.StartRollout, rollouts_pb2.StartRolloutRequest(
            model=name, version=int(version), target=target, stages=parse_stages(stages),
            min_devices=min_devices, soak_seconds=parse_duration(soak), gates=gate,
            max_concurrent_downloads=max_downloads, no_auto_rollback=no_auto_rollback,
            min_samples=min_samples, gate_timeout_seconds=timeout_s,
        )).rollout  # fmt: skip
        if output is OutputFormat.json:
            print_json(_summary(r))
        else:
            echo(f"rollout {r.rollout_id} started: {r.model}:{r.version}, {r.phase}")


@app.command("list")
def list_(ctx: typer.Context, output: OutputFormat = FormatOption) -> None:
    """List rollouts."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import rollouts_pb2

        conn, stub = _stub(ctx)
        rows = [_summary(r) for r in call(conn, stub.ListRollouts,
                                          rollouts_pb2.ListRolloutsRequest()).rollouts]  # fmt: skip
        if output is OutputFormat.json:
            print_json(rows)
        else:
            _table(rows, ["id", "model", "phase", "stage", "devices", "healthy"])


@app.command()
def status(ctx: typer.Context, rollout_id: str, output: OutputFormat = FormatOption) -> None:
    """Stages, each device's state, each gate against its threshold, and why."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import rollouts_pb2

        conn, stub = _stub(ctx)
        r = call(conn, stub.GetRollout, rollouts_pb2.GetRolloutRequest(rollout_id=rollout_id))
        spec, state = json.loads(r.spec_json), json.loads(r.state_json)
        if output is OutputFormat.json:
            print_json({"summary": _summary(r.rollout), "spec": spec, "state": state,
                        "explanation": r.explanation,
                        "events": [{"unix_ms": e.unix_ms, "level": e.level, "message": e.message}
                                   for e in r.events]})  # fmt: skip
            return
        echo(r.explanation)
        stages = ", ".join(f"{s:.0%}" for s in spec["stages"])
        now = state["stage_index"] + 1
        echo(f"stages: {stages} (now {now}); soak {spec['soak_seconds']} s")
        gates = [{"gate": g["gate"], "status": g["status"], "value": _value(g),
                  "threshold": _number(g["threshold"])} for g in state["last_gates"]]  # fmt: skip
        if gates:
            _table(gates, ["gate", "status", "value", "threshold"])
        devices = [{"device": d["device_id"], "stage": d["stage"] + 1 if d["stage"] >= 0 else "-",
                    "state": d["state"], "target": d["target_variant"], "reason": d["reason"]}
                   for d in state["devices"]]  # fmt: skip
        _table(devices, ["device", "stage", "state", "target", "reason"])


def _number(value: Any) -> Any:
    """A float to 4 significant digits for the table (JSON keeps every digit)."""
    return f"{value:.4g}" if isinstance(value, float) else value


def _value(gate: dict[str, Any]) -> Any:
    """A gate's value, with its 95% interval when it has one (waiting gates say so)."""
    value, low, high = gate["value"], gate.get("low"), gate.get("high")
    if low is None or high is None:
        return _number(value)
    shown = "n/a" if value is None else f"{value:.4g}"
    return f"{shown} [{low:.4g}, {high:.4g}]"


_DOCS = {
    "abort": "Abort a rollout: devices that have not installed yet get their assignment "
    "withdrawn (back to what they had before); devices that installed keep the new variant "
    "(use rollback to revert them).",
}


def _command(kind: str) -> Any:
    def run(ctx: typer.Context, rollout_id: str,
            reason: str = typer.Option("", "--reason")) -> None:  # fmt: skip
        with errors_as_exit_codes():
            from controller.cli.client import call
            from edgefleet.v1 import rollouts_pb2

            conn, stub = _stub(ctx)
            r = call(conn, stub.RolloutCommand, rollouts_pb2.RolloutCommandRequest(
                rollout_id=rollout_id, command=kind, reason=reason)).rollout  # fmt: skip
            echo(f"rollout {r.rollout_id}: {r.phase}")
            if kind == "abort":
                got = call(conn, stub.GetRollout,
                           rollouts_pb2.GetRolloutRequest(rollout_id=rollout_id))  # fmt: skip
                echo(_abort_summary(json.loads(got.state_json)))

    run.__doc__ = _DOCS.get(kind, f"{kind.capitalize()} a rollout.")
    return run


def _abort_summary(state: dict[str, Any]) -> str:
    """What an abort did to each device: withdrawn before install, or left as installed."""
    devices = state["devices"]
    withdrawn = [d["device_id"] for d in devices if d["state"] == "withdrawn"]
    kept = [
        d["device_id"]
        for d in devices
        if d["state"] in ("installed", "healthy") and d["previous_variant"] != d["target_variant"]
    ]
    line = f"withdrew {len(withdrawn)} assignments not installed yet"
    if withdrawn:
        line += (
            f" ({', '.join(withdrawn)}): their desired state is back to what they ran "
            "before the rollout, or none"
        )
    lines = [line]
    if kept:
        lines.append(
            f"{len(kept)} devices had installed and keep the new variant ({', '.join(kept)}); "
            "abort does not revert them: run `edgefleet rollout rollback` for that"
        )
    return "\n".join(lines)


for _kind in ("pause", "resume", "promote", "abort", "rollback"):
    app.command(_kind)(_command(_kind))
