"""Helpers both command-line tools share: one-line errors, exit codes, table/JSON output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import typer

from edgefleet.errors import EdgeFleetError, InvalidInput, NotFound, Unauthenticated, Unavailable

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAUTHENTICATED = 3
EXIT_UNAVAILABLE = 4


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


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
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


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            typer.echo("  ".join("-" * w for w in widths))
