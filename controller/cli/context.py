"""What every operator command receives: where the controller is and how to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from controller.config import DEFAULT_DATA_DIR


@dataclass
class CliContext:
    data_dir: Path = DEFAULT_DATA_DIR
    controller: str | None = None
    token: str | None = None
    ca_file: Path | None = None

    def connection(self):
        from controller.cli.client import resolve_connection

        return resolve_connection(self.data_dir, self.controller, self.token, self.ca_file)


def cli_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliContext) else CliContext()


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """``key=value`` pairs (repeatable, or comma-separated) into a dict."""
    from edgefleet.errors import InvalidInput

    labels: dict[str, str] = {}
    for item in (part for pair in pairs for part in pair.split(",") if part):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"labels are key=value, not {item!r}")
        labels[key.strip()] = value.strip()
    return labels
