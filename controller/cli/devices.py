"""`edgefleet device ...`: register, list, show, label and revoke devices."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from controller.cli.context import cli_context, parse_labels
from edgefleet.cli import (
    OutputFormat,
    echo,
    errors_as_exit_codes,
    print_json,
    print_table,
    printable,
    proto_dict,
)

app = typer.Typer(
    help="Register devices and manage their identity and labels.", no_args_is_help=True
)

FormatOption = typer.Option(OutputFormat.table, "--format", help="table or json")


def _stub(ctx: typer.Context):
    from controller.cli.client import open_channel
    from edgefleet.v1 import admin_pb2_grpc

    conn = cli_context(ctx).connection()
    return conn, admin_pb2_grpc.DeviceAdminServiceStub(open_channel(conn))


def _when(unix_ms: int) -> str:
    if not unix_ms:
        return "-"
    return dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def device_dict(device: Any) -> dict[str, Any]:
    return proto_dict(device)


def labels_text(labels: Any) -> str:
    """``k=v,k2=v2`` (sorted), the form `--label` and `--selector` take."""
    return printable(",".join(f"{k}={v}" for k, v in sorted(labels.items())))


@app.command()
def register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Unique device name, e.g. cam-1."),
    profile: str = typer.Option("auto", "--profile", help="Hardware profile name, or auto."),
    label: list[str] = typer.Option([], "--label", help="key=value (repeatable)."),
    ttl: int = typer.Option(24 * 3600, "--token-ttl", help="Enrollment token lifetime, seconds."),
    output: OutputFormat = FormatOption,
) -> None:
    """Create a device record and print its single-use enrollment token."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import admin_pb2

        conn, stub = _stub(ctx)
        response = call(
            conn,
            stub.RegisterDevice,
            admin_pb2.RegisterDeviceRequest(
                name=name, profile=profile, labels=parse_labels(label), token_ttl_seconds=ttl
            ),
        )
        if output is OutputFormat.json:
            print_json(
                {
                    "device": device_dict(response.device),
                    "enrollment_token": response.enrollment_token,
                    "token_expires": _when(response.token_expires_unix_ms),
                }
            )
            return
        echo(f"registered {printable(response.device.name)} as {response.device.device_id}")
        echo(f"enrollment token (single use, expires {_when(response.token_expires_unix_ms)}):")
        echo(response.enrollment_token)
        echo(
            f"on the device: edgefleet-agent enroll --controller {conn.address} "
            f"--token {response.enrollment_token}"
        )


@app.command("list")
def list_devices(
    ctx: typer.Context,
    selector: list[str] = typer.Option([], "--selector", "-l", help="key=value filter."),
    output: OutputFormat = FormatOption,
) -> None:
    """List devices, online state and resolved profile."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import admin_pb2

        conn, stub = _stub(ctx)
        response = call(
            conn,
            stub.ListDevices,
            admin_pb2.ListDevicesRequest(label_selector=parse_labels(selector)),
        )
        if output is OutputFormat.json:
            print_json([device_dict(d) for d in response.devices])
            return
        print_table(
            ["NAME", "ID", "STATE", "ONLINE", "PROFILE", "LABELS", "LAST SEEN"],
            [
                [
                    d.name,
                    d.device_id,
                    d.state,
                    "yes" if d.online else "no",
                    d.profile or f"({d.requested_profile})",
                    labels_text(d.labels),
                    _when(d.last_seen_unix_ms),
                ]
                for d in response.devices
            ],
        )


@app.command()
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Device name or id."),
    output: OutputFormat = FormatOption,
) -> None:
    """Everything the controller knows about one device, hardware facts included."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import admin_pb2

        conn, stub = _stub(ctx)
        device = call(conn, stub.GetDevice, admin_pb2.GetDeviceRequest(name_or_id=name)).device
        data = device_dict(device)
        if output is OutputFormat.json:
            print_json(data)
            return
        facts = data.pop("facts", {})
        data["labels"] = labels_text(data.get("labels", {})) or "-"
        rows = [[k, v] for k, v in data.items()]
        rows += [
            [f"facts.{k}", ", ".join(v) if isinstance(v, list) else v] for k, v in facts.items()
        ]
        print_table(["FIELD", "VALUE"], rows)


@app.command()
def revoke(ctx: typer.Context, name: str = typer.Argument(..., help="Device name or id.")) -> None:
    """Revoke a device: its certificate and MQTT credentials are refused from now on."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import admin_pb2

        conn, stub = _stub(ctx)
        device = call(conn, stub.RevokeDevice, admin_pb2.RevokeDeviceRequest(name_or_id=name))
        echo(f"revoked {printable(device.device.name)} ({device.device.device_id})")


@app.command()
def label(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Device name or id."),
    pairs: list[str] = typer.Argument(None, help="key=value to set, or key- to remove."),
    output: OutputFormat = FormatOption,
) -> None:
    """Set (key=value) or remove (key-) labels."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import admin_pb2

        pairs = pairs or []
        remove = [p[:-1] for p in pairs if p.endswith("-") and "=" not in p]
        to_set = parse_labels([p for p in pairs if not (p.endswith("-") and "=" not in p)])
        conn, stub = _stub(ctx)
        device = call(
            conn,
            stub.LabelDevice,
            admin_pb2.LabelDeviceRequest(name_or_id=name, set=to_set, remove=remove),
        ).device
        if output is OutputFormat.json:
            print_json(device_dict(device))
        else:
            echo(f"{printable(device.name)}: {labels_text(device.labels)}")


@app.command("profiles")
def profiles(ctx: typer.Context, output: OutputFormat = FormatOption) -> None:
    """The hardware profiles devices can be registered with."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import admin_pb2

        conn, stub = _stub(ctx)
        response = call(conn, stub.ListProfiles, admin_pb2.ListProfilesRequest())
        if output is OutputFormat.json:
            print_json([proto_dict(p) for p in response.profiles])
            return
        print_table(
            ["NAME", "RUNTIMES", "PRECISIONS", "THREADS", "DESCRIPTION"],
            [
                [p.name, ",".join(p.runtimes), ",".join(p.precisions), p.threads, p.description]
                for p in response.profiles
            ],
        )
