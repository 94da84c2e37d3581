"""Helpers both command-line tools share: one-line errors, exit codes, table/JSON output,
``--version`` and the process setup of an entry point."""

from __future__ import annotations

import json
import logging
import numbers
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import typer

from edgefleet.errors import EdgeFleetError, InvalidInput, NotFound, Unauthenticated, Unavailable

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAUTHENTICATED = 3
EXIT_UNAVAILABLE = 4


DISTRIBUTION = "edgefleet"


def quiet_grpc_core(environ: MutableMapping[str, str]) -> None:
    """gRPC's C core logs on stderr by itself (a failed TLS handshake, a port it cannot bind),
    next to the one-line error the CLI prints for the same failure: silence it. An entry point
    calls this with ``os.environ`` before anything imports grpc; an explicit GRPC_VERBOSITY
    (e.g. ``debug``, which grpc's own errors suggest) still wins."""
    environ.setdefault("GRPC_VERBOSITY", "NONE")


def run_app(app: typer.Typer) -> None:
    """Run a CLI app with a bad flag or value reported as one line (``error: ...``, exit 2)
    instead of click's usage box; help, --version and commands behave as typer runs them."""
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except usage_error as exc:  # type: ignore[misc]
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as before
            exc.show()
            sys.exit(exc.exit_code)
        path = exc.ctx.command_path if exc.ctx is not None else ""
        hint = f" (see {path} --help)" if path else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


def distribution_version() -> str:
    """The installed distribution's version (its metadata), as ``--version`` prints it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def version_callback(program: str) -> Any:
    """An eager ``--version`` option callback: print ``PROGRAM VERSION`` and exit 0."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{program} {distribution_version()}")
            raise typer.Exit(0)

    return show


def version_option(program: str) -> Any:
    return typer.Option(
        False,
        "--version",
        callback=version_callback(program),
        is_eager=True,
        help="Show the version and exit.",
    )


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # onnxruntime's quantizer advises "pre-processing" on the root logger for every variant.
    for handler in logging.getLogger().handlers:
        handler.addFilter(
            lambda record: (
                "pre-processing before quantization" not in record.getMessage()
                and "run pre-processing" not in record.getMessage()
            )
        )
    # Libraries that narrate every state change at INFO.
    for noisy in ("transitions", "amqtt", "botocore", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character a terminal would not show as itself escaped (``\\x00``,
    ``\\u202e``): control, bidi-override and other format characters, line separators, and
    newlines unless ``newlines``. Names come from the controller's database: a stored NUL or
    right-to-left override must not rearrange what the operator reads."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or (newlines and c == "\n") else c.encode("unicode_escape").decode()
        for c in text
    )


def echo(message: str = "", *, err: bool = False) -> None:
    """``typer.echo`` of ``printable(message, newlines=True)``: how the CLIs print text."""
    typer.echo(printable(message, newlines=True), err=err)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code)


@contextmanager
def errors_as_exit_codes() -> Iterator[None]:
    """Turn expected failures into ``error: ...`` on stderr and a non-zero exit, no traceback."""
    try:
        yield
    except Unauthenticated as exc:
        raise fail(str(exc), EXIT_UNAUTHENTICATED) from None
    except Unavailable as exc:
        raise fail(str(exc), EXIT_UNAVAILABLE) from None
    except (InvalidInput, NotFound) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except EdgeFleetError as exc:
        raise fail(str(exc), EXIT_ERROR) from None


def _json_value(value: Any) -> Any:
    """What ``json`` cannot encode itself: protobuf messages, NumPy scalars, paths."""
    if hasattr(value, "DESCRIPTOR") and hasattr(value, "ListFields"):
        return proto_dict(value)
    if hasattr(value, "tolist"):  # NumPy scalars and arrays: Python numbers, bools, lists
        return value.tolist()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)  # paths, enums of other kinds, datetimes


def print_json(data: Any) -> None:
    """The one way every ``--format json`` prints: integers are JSON numbers, always."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=_json_value))


def proto_dict(message: Any) -> dict[str, Any]:
    """A protobuf message as plain data, field names as in the .proto, every field present.

    protobuf's JSON mapping writes 64-bit integers as strings (JavaScript cannot hold them);
    this CLI's JSON writes every integer as a number, so they are turned back here."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _int64_as_numbers(message.DESCRIPTOR, data)
    return data


def _int64_as_numbers(descriptor: Any, data: dict[str, Any]) -> None:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            data[field.name] = {k: _field_value(value_field, v) for k, v in value.items()}
        elif isinstance(value, list):
            data[field.name] = [_field_value(field, v) for v in value]
        else:
            data[field.name] = _field_value(field, value)


def _field_value(field: Any, value: Any) -> Any:
    from google.protobuf.descriptor import FieldDescriptor as F

    int64 = (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64)
    if field.type in int64 and isinstance(value, str):
        return int(value)
    if field.message_type is not None and isinstance(value, dict):
        _int64_as_numbers(field.message_type, value)
    return value


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [
        [printable(str(c)) for c in headers],
        *[[("" if c is None else printable(str(c))) for c in r] for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            typer.echo("  ".join("-" * w for w in widths))
