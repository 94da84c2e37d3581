"""`rollout start --help` documents the gate timeout and the not-applicable baseline rule;
`rollout abort --help` says what abort does to installed and not-installed devices."""

from __future__ import annotations

from typer.testing import CliRunner

from controller.cli.rollouts import app


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_start_help_documents_gate_timeout_and_missing_baseline() -> None:
    text = _help("start")
    assert "--gate-timeout" in text and "default 1h" in text
    assert "rollout halts" in text and "not applicable" in text
    assert "A baseline that has not reported yet makes the gate wait" in text


def test_abort_help_says_installed_devices_keep_the_variant() -> None:
    text = _help("abort")
    assert "withdrawn" in text and "use rollback" in text
