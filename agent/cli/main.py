"""`edgefleet-agent`: enroll this device, run it, show what it knows about itself.

Heavy imports live inside the commands so that `--help` is instant.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import typer

from edgefleet.cli import (
    OutputFormat,
    configure_logging,
    errors_as_exit_codes,
    print_json,
    print_table,
)

DEFAULT_DATA_DIR = Path("~/.edgefleet-agent").expanduser()

app = typer.Typer(
    name="edgefleet-agent",
    help="EdgeFleet device agent: enroll with a controller, then run models and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DataDir = typer.Option(
    DEFAULT_DATA_DIR,
    "--data-dir",
    envvar="EDGEFLEET_AGENT_DATA_DIR",
    help="Where the agent keeps its key, certificate and state.",
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    configure_logging(verbose)


@app.command()
def enroll(
    controller: str = typer.Option(..., "--controller", help="Controller gRPC address HOST:PORT."),
    token: str = typer.Option(..., "--token", help="Token from `edgefleet device register`."),
    data_dir: Path = DataDir,
    facts_file: Path | None = typer.Option(
        None, "--facts", help="JSON file overriding detected hardware facts."
    ),
    attempts: int = typer.Option(5, min=1, help="Connection attempts before giving up."),
) -> None:
    """Create this device's key, get a certificate from the controller, save the identity."""
    with errors_as_exit_codes():
        from agent.enroll import enroll as do_enroll
        from agent.hardware import apply_overrides, detect

        facts = detect()
        if facts_file:
            facts = apply_overrides(facts, facts_file)
        identity = do_enroll(data_dir, controller, token, facts, attempts=attempts)
        typer.echo(f"enrolled as {identity.device_id} (profile {identity.profile})")


@app.command()
def run(
    data_dir: Path = DataDir,
    heartbeat_interval: float = typer.Option(5.0, min=0.1, help="Seconds between heartbeats."),
) -> None:
    """Run the agent until SIGINT/SIGTERM (or until the controller revokes this device)."""
    with errors_as_exit_codes():
        from agent.daemon import AgentConfig, AgentDaemon

        daemon = AgentDaemon(
            AgentConfig(data_dir=data_dir, heartbeat_interval_s=heartbeat_interval)
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: daemon.stopping.set())
        code = daemon.run()
    raise typer.Exit(code)


@app.command()
def facts(
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Show the hardware facts this agent would report."""
    from agent.hardware import detect

    data = dataclasses.asdict(detect())
    if output is OutputFormat.json:
        print_json(data)
    else:
        print_table(["fact", "value"], [[k, v] for k, v in data.items()])


@app.command()
def status(
    data_dir: Path = DataDir,
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Show this device's identity (never its secrets)."""
    with errors_as_exit_codes():
        from agent.identity import Identity

        identity = dataclasses.asdict(Identity.load(data_dir))
        identity.pop("mqtt_password")
        if output is OutputFormat.json:
            print_json(identity)
        else:
            print_table(["field", "value"], [[k, v] for k, v in identity.items()])


@app.command()
def bench(
    data_dir: Path = DataDir,
    model: str = typer.Option("", "--model", help="Only this model's candidates."),
    runs: int = typer.Option(30, min=3, help="Timed runs per variant."),
    warmup: int = typer.Option(5, min=0, help="Untimed runs first."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Measure the controller's candidate variants on this device and report the latencies."""
    with errors_as_exit_codes():
        from agent.bench import run_bench
        from agent.controller_client import device_channel
        from agent.identity import Credentials, Identity
        from agent.updates_client import UpdateClient

        identity = Identity.load(data_dir)
        channel = device_channel(identity.controller, Credentials.load(data_dir), 4 << 20)
        try:
            outcomes, reselected = run_bench(
                data_dir,
                UpdateClient(channel),
                identity.profile,
                model=model,
                warmup=warmup,
                runs=runs,
            )
        finally:
            channel.close()
        rows = [dataclasses.asdict(o) for o in outcomes]
        if output is OutputFormat.json:
            print_json({"profile": identity.profile, "results": rows, "reselected": reselected})
            return
        print_table(
            ["variant", "ok", "median ms", "p95 ms", "error"],
            [
                [
                    r["variant_id"],
                    r["ok"],
                    f"{r['median_ms']:.3f}",
                    f"{r['p95_ms']:.3f}",
                    r["error"],
                ]
                for r in rows
            ],
        )
        typer.echo(f"reselected: {', '.join(reselected) or '-'}")


def main() -> None:
    os.umask(0o077)
    app()
