"""`edgefleet`: the operator CLI. One sub-command per noun; heavy imports stay inside commands
so that `--help` is instant."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from controller.cli import (
    devices,
    fleet,
    hard_examples,
    keys,
    model_training,
    models,
    rollouts,
    serve,
    simulate,
)
from controller.cli.context import CliContext
from controller.config import DEFAULT_DATA_DIR
from edgefleet.cli import configure_logging, quiet_grpc_core, run_app, version_option

app = typer.Typer(
    name="edgefleet",
    help="EdgeFleet: fleet orchestration for computer-vision models on edge devices.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(serve.app, name="controller")
app.add_typer(devices.app, name="device")
app.add_typer(fleet.app, name="fleet")
model_training.register(models.app)  # model distill, model students
hard_examples.register(models.app)  # model hard-examples, model retrain
app.add_typer(models.app, name="model")
app.add_typer(keys.app, name="keys")
app.add_typer(rollouts.app, name="rollout")
app.command("simulate")(simulate.simulate)


class _RootContext(CliContext):
    data_dir_given: bool = False


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar="EDGEFLEET_DATA_DIR",
        help="Controller data directory (holds client.toml) [~/.edgefleet].",
    ),
    controller: str | None = typer.Option(
        None, "--controller", envvar="EDGEFLEET_CONTROLLER", help="Controller HOST:PORT."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="EDGEFLEET_TOKEN", help="Operator token.", show_default=False
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", envvar="EDGEFLEET_CA_FILE", help="Controller CA certificate."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    _version: bool = version_option("edgefleet"),
) -> None:
    configure_logging(verbose)
    root = _RootContext(data_dir or DEFAULT_DATA_DIR, controller, token, ca_file)
    root.data_dir_given = data_dir is not None
    ctx.obj = root


@app.command()
def demo(
    agents: int = typer.Option(3, min=1, max=20, help="How many agents to enroll."),
    keep: bool = typer.Option(False, help="Keep the demo's data directory."),
) -> None:
    """Show every finished capability end to end on this machine."""
    from controller.demo.run import run_demo

    raise typer.Exit(run_demo(agents=agents, keep=keep, env=os.environ))


def main() -> None:
    quiet_grpc_core(os.environ)  # before any command imports grpc
    os.umask(0o077)
    run_app(app)
