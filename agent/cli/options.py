"""The file layer of `edgefleet-agent run`'s options: flag > environment > config file >
default. Typer resolves flags and EDGEFLEET_AGENT_<OPTION> variables; a TOML file fills in
the options left at their defaults, converted and range-checked exactly like the flags."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer

from edgefleet.errors import InvalidInput

_GIVEN = ("COMMANDLINE", "ENVIRONMENT")  # parameter sources that win over the file


def with_config_file(ctx: typer.Context, path: Path | None) -> dict[str, Any]:
    """The command's option values, with those left at their defaults taken from ``path``."""
    values = dict(ctx.params)
    if path is None:
        return values
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"--config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"--config {path}: not TOML: {exc}") from exc
    params = {p.name: p for p in ctx.command.params if p.name and p.name != "config_file"}
    for key, raw in data.items():
        name = key.replace("-", "_")
        param = params.get(name)
        if param is None:
            raise InvalidInput(f"--config {path}: unknown option {key!r}")
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in _GIVEN:
            continue  # a flag or an environment variable wins over the file
        try:
            values[name] = param.process_value(ctx, raw)
        except typer.BadParameter as exc:
            raise InvalidInput(f"--config {path}: {key}: {exc.message}") from exc
    return values
