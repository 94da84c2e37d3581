"""`edgefleet simulate`: drive simulated devices against a controller on the real protocols."""

from __future__ import annotations

import typer

from controller.cli.context import cli_context, parse_labels
from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json


def simulate(
    ctx: typer.Context,
    devices: int = typer.Option(20, "--devices", "-n", min=1, max=100_000, help="How many."),
    rate: float = typer.Option(
        0.1, "--rate", min=0.0, help="Telemetry reports per second per device (0 = none)."
    ),
    duration: float = typer.Option(
        60.0, "--duration", min=0.1, help="Seconds to run once every device is connected."
    ),
    processes: int = typer.Option(2, "--processes", "-p", min=1, max=64, help="Processes."),
    heartbeat: float = typer.Option(5.0, "--heartbeat", min=0.1, help="Heartbeat interval, s."),
    poll: float = typer.Option(30.0, "--poll", min=0.5, help="Desired-state pull interval, s."),
    profile: str = typer.Option("generic-cpu", "--profile", help="Hardware profile, or auto."),
    label: list[str] = typer.Option([], "--label", help="key=value on every device."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Register DEVICES simulated devices, enroll each (own key, certificate and MQTT
    credentials), then send heartbeats and telemetry over MQTT and follow rollouts (desired
    state, download checked by length and sha256, reports) for DURATION seconds."""
    with errors_as_exit_codes():
        from controller.cli.client import open_channel
        from controller.simulate.run import Simulation, SimulationConfig

        conn = cli_context(ctx).connection()
        config = SimulationConfig(
            devices=devices, processes=processes, report_rate=rate,
            heartbeat_interval_s=heartbeat, poll_interval_s=poll, duration_s=duration,
            profile=profile, labels=parse_labels(label),
        )  # fmt: skip
        channel = open_channel(conn)
        sim = Simulation(channel, conn.ca_pem, conn.address, config)
        try:
            sim.start()
            sim.wait_ready()
            if output is OutputFormat.table:
                echo(f"{devices} devices enrolled and connected in {sim.enroll_s:.1f} s; "
                     f"running {duration:.0f} s")  # fmt: skip
            result = sim.join()
        except KeyboardInterrupt:
            result = sim.stop()
        finally:
            channel.close()
        if output is OutputFormat.json:
            print_json(result.to_dict())
            return
        s = result.stats
        echo(f"ran {result.ran_s:.1f} s: {s['reports']} telemetry reports "
             f"({s['reports'] / max(result.ran_s, 1e-9):.0f}/s), {s['heartbeats']} heartbeats, "
             f"{s['updates']} updates ({s['downloaded_bytes']} bytes), {s['update_errors']} "
             f"update errors, {s['connected_at_end']}/{devices} connected at the end")  # fmt: skip
