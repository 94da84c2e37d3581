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
    quiet_grpc_core,
    run_app,
    version_option,
)

DEFAULT_DATA_DIR = Path("~/.edgefleet-agent").expanduser()

app = typer.Typer(
    name="edgefleet-agent",
    help="EdgeFleet device agent: enroll with a controller, then run models and report.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DEFAULT_FPS = 30.0  # `run --source`: a camera's rate; unpaced (0) only when asked for

DataDir = typer.Option(
    DEFAULT_DATA_DIR,
    "--data-dir",
    envvar="EDGEFLEET_AGENT_DATA_DIR",
    help="Where the agent keeps its key, certificate and state.",
)


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    _version: bool = version_option("edgefleet-agent"),
) -> None:
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


RUN_ENV_PREFIX = "EDGEFLEET_AGENT"  # `run` reads EDGEFLEET_AGENT_<OPTION> (e.g. _FPS) too


@app.command(context_settings={"auto_envvar_prefix": RUN_ENV_PREFIX})
def run(
    ctx: typer.Context,
    data_dir: Path = DataDir,
    config_file: Path | None = typer.Option(
        None,
        "--config",
        help="TOML file of run options (keys as the flags: fps, ota-poll, ..."
        "); a flag or EDGEFLEET_AGENT_<OPTION> variable wins over the file.",
    ),
    heartbeat_interval: float = typer.Option(5.0, min=0.1, help="Seconds between heartbeats."),
    source: str | None = typer.Option(
        None, "--source", help="Frames: image directory, .npy/.npz, video file or camera:N."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Variant directory (variant.json + model file) to run."
    ),
    offload_threshold: float | None = typer.Option(
        None, "--offload-threshold", min=0.0, max=1.0, help="Offload below this confidence."
    ),
    offload_budget: float | None = typer.Option(
        None, "--offload-budget", min=0.0, max=1.0, help="Target share of frames to offload [0.2]."
    ),
    offload_shift_budget: float = typer.Option(
        0.0,
        "--offload-shift-budget",
        min=0.0,
        max=1.0,
        help="Share of frames to offload while confidences drift from the variant's "
        "validation histogram (PSI >= 0.25) [0 = off].",
    ),
    confidence: str = typer.Option(
        "max_softmax", "--confidence", help="max_softmax | margin | entropy."
    ),
    audit_rate: float = typer.Option(
        0.02, "--audit-rate", min=0.0, max=1.0, help="Share of confident frames sent to audit."
    ),
    telemetry_interval: float = typer.Option(
        10.0, "--telemetry-interval", min=0.1, help="Seconds between telemetry reports."
    ),
    fps: float = typer.Option(
        DEFAULT_FPS,
        "--fps",
        min=0.0,
        help="Frames per second taken from --source (a camera's rate). 0 = unpaced: as fast "
        "as the model runs, which keeps a whole core busy.",
    ),
    skip_threshold: float | None = typer.Option(
        None, "--skip-threshold", min=0.0, help="Skip frames differing less than this."
    ),
    loop: bool = typer.Option(False, "--loop", help="Restart the source at its end."),
    offload_deadline: float = typer.Option(
        0.5, "--offload-deadline", min=0.01, help="Seconds a hard frame waits for the cloud."
    ),
    mqtt: str | None = typer.Option(None, "--mqtt", help="Override the broker URL."),
    results: Path | None = typer.Option(
        None, "--results", help="Append every answer as a JSON line to this file."
    ),
    threads: int = typer.Option(
        0, "--threads", min=0, help="Inference threads (0 = the device profile's count)."
    ),
    ota: bool = typer.Option(True, "--ota/--no-ota", help="Apply over-the-air model updates."),
    ota_poll: float = typer.Option(
        30.0, "--ota-poll", min=0.1, help="Seconds between desired-state pulls."
    ),
    ota_probation: float = typer.Option(
        300.0, "--ota-probation", min=0.0, help="Seconds a new model stays on probation."
    ),
    ota_latency_budget: float | None = typer.Option(
        None,
        "--ota-latency-budget",
        min=0.0,
        help="Median local ms a new model may take on probation before it is rolled back "
        "[default: the frame period at --fps, 33.3 ms at 30 fps; 250 ms at --fps 0]. 0 = no "
        "latency check.",
    ),
    ota_max_error_rate: float = typer.Option(
        0.05,
        "--ota-max-error-rate",
        min=0.0,
        max=1.0,
        help="Share of frames a new model may fail on during probation.",
    ),
    artifact_urls: bool = typer.Option(
        True,
        "--artifact-urls/--no-artifact-urls",
        help="Download models over the presigned URL the controller offers (S3 store); its "
        "stream is the fallback either way.",
    ),
    artifact_url_ca: Path | None = typer.Option(
        None,
        "--artifact-url-ca",
        help="CA file (PEM) trusted for the artifact URLs' host, e.g. a MinIO with a private "
        "CA [default: the system CAs].",
    ),
) -> None:
    """Run the agent until SIGINT/SIGTERM (or until the controller revokes this device).

    Without --model it runs the model OTA installed last, or waits for the first rollout."""
    with errors_as_exit_codes():
        from agent.assembly import build_agent
        from agent.cli.options import with_config_file
        from agent.config import AgentConfig, OtaSettings
        from edgefleet.confidence import METRICS
        from edgefleet.errors import InvalidInput

        # the options as resolved (flag > EDGEFLEET_AGENT_<OPTION> > --config file > default),
        # by parameter name; the function's own arguments only declare them
        o = with_config_file(ctx, config_file)
        if o["offload_threshold"] is not None and o["offload_budget"] is not None:
            raise InvalidInput("give --offload-threshold or --offload-budget, not both")
        if o["confidence"] not in METRICS:
            raise InvalidInput(f"--confidence must be one of {', '.join(sorted(METRICS))}")
        if o["source"] and o["model"] is None and not o["ota"]:
            raise InvalidInput("--source needs --model (a variant directory) or OTA updates")
        if o["source"]:
            from agent.runtime.errors import FrameSourceError
            from agent.runtime.sources import open_source

            try:  # a missing or unsupported source fails now, not when a first model arrives
                open_source(o["source"])
            except FrameSourceError as exc:
                raise InvalidInput(f"--source: {exc}") from exc
        ota_settings = OtaSettings(
            poll_interval_s=o["ota_poll"],
            probation_s=o["ota_probation"],
            latency_budget_ms=o["ota_latency_budget"],
            max_error_rate=o["ota_max_error_rate"],
            artifact_urls=o["artifact_urls"],
            artifact_url_ca_file=_path(o["artifact_url_ca"]),
        )
        agent = build_agent(
            AgentConfig(
                data_dir=Path(o["data_dir"]),
                heartbeat_interval_s=o["heartbeat_interval"],
                mqtt_url=o["mqtt"] or "",
                ota=ota_settings if o["ota"] else None,
                model_dir=_path(o["model"]),
                source=o["source"] or "",
                offload_threshold=o["offload_threshold"],
                offload_budget=o["offload_budget"],
                offload_shift_budget=o["offload_shift_budget"],
                confidence=o["confidence"],
                audit_rate=o["audit_rate"],
                offload_deadline_s=o["offload_deadline"],
                telemetry_interval_s=o["telemetry_interval"],
                fps=o["fps"],
                skip_threshold=o["skip_threshold"],
                loop=o["loop"],
                results_file=_path(o["results"]),
                threads=o["threads"] or None,
            )
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: agent.stopping.set())
        code = agent.run()
    raise typer.Exit(code)


@app.command("pack-model")
def pack_model(
    onnx_file: Path = typer.Option(..., "--onnx", exists=True, help="The edge ONNX model."),
    preprocess: Path = typer.Option(..., "--preprocess", exists=True, help="preprocess.json."),
    out: Path = typer.Option(..., "--out", help="Variant directory to write."),
    labels: Path | None = typer.Option(None, "--labels", exists=True, help="labels.txt."),
    name: str = typer.Option("", "--name", help="Model name [the ONNX file's directory name]."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.01, help="Softmax temperature."),
) -> None:
    """Make a runnable variant directory (variant.json) from a plain ONNX model."""
    with errors_as_exit_codes():
        from agent.pack import pack_model as do_pack

        meta = do_pack(onnx_file, preprocess, out, labels, name, temperature=temperature)
        typer.echo(f"wrote {out} ({meta.variant_id})")


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
    quiet_grpc_core(os.environ)  # before any command imports grpc
    os.umask(0o077)
    run_app(app)


def _path(value: object) -> Path | None:
    return None if value is None else Path(str(value))
