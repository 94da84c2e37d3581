"""`edgefleet model distill` and `edgefleet model students`: the training stages' commands,
registered on the `model` sub-app (``register(app)``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json, print_table

PHASES = ("data", "teacher", "train", "export", "register")


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)
    app.command("students")(students)


def students(
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    frame: int = typer.Option(28, "--frame", min=8, help="Frame side (px) for the input sizes."),
    channels: int = typer.Option(1, "--channels", min=1, help="Frame channels."),
    classes: int = typer.Option(10, "--classes", min=2, help="Number of classes."),
) -> None:
    """The student architectures `model distill --student` takes."""
    with errors_as_exit_codes():
        from controller.training.catalogue import catalogue_rows

        rows = catalogue_rows((frame, frame), channels, classes)
        if output is OutputFormat.json:
            print_json(rows)
            return
        print_table(
            ["name", "width", "input", "parameters", "summary"],
            [
                [
                    r["name"],
                    r["width"],
                    "x".join(str(d) for d in r["input_size"]),  # type: ignore[attr-defined]
                    f"{r['parameters']:,}",
                    r["summary"],
                ]
                for r in rows
            ],
        )


def distill(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The teacher: NAME or NAME:VERSION (default: latest)."),
    student: str = typer.Option(..., "--student", help="Architecture (see `model students`)."),
    data: Path = typer.Option(..., "--data", help="Training frames: .npz (x, y) or IDX dir."),
    extra: list[Path] = typer.Option([], "--extra-data", help="More .npz frames (repeatable)."),
    name: str = typer.Option("", "--name", help="Edge model to register (TEACHER-student)."),
    temperature: float = typer.Option(4.0, "--temperature", help="Softens both distributions."),
    alpha: float = typer.Option(0.7, "--alpha", help="Soft targets' weight (0: labels only)."),
    epochs: int = typer.Option(10, "--epochs", min=1, max=1000),
    batch_size: int = typer.Option(128, "--batch-size", min=1, max=1024),
    max_minutes: float = typer.Option(60.0, "--max-minutes", help="Wall-time bound of the run."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Distil a student from TEACHER and register it (Ctrl-C cancels).

    Trains --student on the frames at --data with the teacher's soft targets plus the labels,
    and registers it as the next version of --name once exported and checked; a cancelled,
    timed-out or failed run registers nothing."""
    with errors_as_exit_codes():
        from controller.cli.models import _stub, parse_ref
        from controller.cli.training_data import upload_training_frames
        from controller.training.catalogue import architecture
        from edgefleet.errors import InvalidInput
        from edgefleet.v1 import models_pb2

        teacher, version = parse_ref(ref)
        architecture(student)  # an unknown one lists the known ones, before any upload
        if max_minutes <= 0:
            raise InvalidInput("--max-minutes must be positive")
        conn, stub = _stub(ctx)
        request = models_pb2.DistillModelRequest(
            teacher=teacher,
            teacher_version=version,
            student=student,
            data_sha256=upload_training_frames(conn, stub, data),
            extra_data_sha256=[upload_training_frames(conn, stub, p) for p in extra],
            name=name,
            temperature=temperature,
            alpha=alpha,
            alpha_set=True,
            epochs=epochs,
            batch_size=batch_size,
            max_seconds=max_minutes * 60,
        )
        report = stream_training(
            conn, stub.DistillModel, request, PHASES, max_minutes * 60,
            quiet=output is OutputFormat.json,
        )  # fmt: skip
        if output is OutputFormat.json:
            print_json(report)
        else:
            print_summary(report)


def stream_training(
    conn: Any, rpc: Any, request: Any, phases: tuple[str, ...], bound_s: float, quiet: bool
) -> dict[str, Any]:
    """A training run's progress as one bar per phase (on stderr), then its report; Ctrl-C
    cancels the call (the controller registers nothing then). ``rpc``: the stub's method."""
    import grpc
    from rich.console import Console
    from rich.progress import Progress

    from controller.training.errors import TrainingCancelled
    from edgefleet.errors import Unavailable
    from edgefleet.status import error_for

    call = rpc(request, timeout=bound_s + 120)
    width = max(len(p) for p in phases)
    report: dict[str, Any] = {}
    try:
        with Progress(console=Console(stderr=True), transient=False, disable=quiet) as bars:
            tasks = {p: bars.add_task(p, total=1.0, visible=False) for p in phases}
            for event in call:
                if event.HasField("report_json"):
                    report = json.loads(event.report_json)
                    continue
                p = event.progress
                if p.phase in tasks:
                    text = f"{p.phase:{width}s} {p.message}"[:80]
                    bars.update(
                        tasks[p.phase], completed=p.fraction, description=text, visible=True
                    )
    except KeyboardInterrupt:
        call.cancel()
        raise TrainingCancelled("cancelled: nothing was registered") from None
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise Unavailable(f"controller at {conn.address}: {details}") from None
        raise error_for(code)(details) from None
    return report


def print_summary(r: dict[str, Any]) -> None:
    model = r["model"]
    echo(f"registered {model['ref']} (student {r['student']}, teacher {r['teacher']})")
    echo(
        f"  validation accuracy: student {r['student_accuracy']:.4f}, teacher "
        f"{r['teacher_accuracy']:.4f} ({r['validation_frames']} frames)"
    )
    size = "x".join(str(d) for d in r["input_size"])
    echo(
        f"  student: {r['parameters']:,} parameters, input {size}, "
        f"{r['latency_ms']:.3f} ms/frame (ONNX Runtime, 1 thread, batch 1)"
    )
    echo(
        f"  trained on {r['trained_frames']} frames ({r['train_frames']} uploaded + augmented "
        f"copies), {r['fit']['epochs']} epochs, alpha {r['alpha']}, T {r['temperature']}"
    )
    seconds = r["phase_seconds"]
    phases = ", ".join(f"{k} {seconds[k]:.1f} s" for k in PHASES if k in seconds)
    echo(f"  wall time {r['wall_seconds']:.1f} s: {phases}")
