"""`edgefleet-agent run` builds one AgentConfig: flag > EDGEFLEET_AGENT_<OPTION> > --config
TOML file > default, every layer converted and range-checked like the flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import agent.assembly
from agent.cli.main import app
from agent.config import UNPACED_LATENCY_BUDGET_MS, AgentConfig, OtaSettings


class _Built:
    def __init__(self) -> None:
        self.configs: list[AgentConfig] = []

    def __call__(self, config: AgentConfig) -> _Built:
        self.configs.append(config)
        return self

    def run(self) -> int:
        return 0

    @property
    def stopping(self) -> object:
        return self


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> _Built:
    b = _Built()
    monkeypatch.setattr(agent.assembly, "build_agent", b)
    monkeypatch.setattr("signal.signal", lambda *_a: None)
    return b


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", "--data-dir", str(tmp_path), *args], env=env)
    return result.exit_code, result.output


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path, built: _Built) -> None:
    file = tmp_path / "agent.toml"
    file.write_text('fps = 7\nota-poll = 2.5\nota_probation = 9\nmqtt = "mqtt://file:1"\n')
    code, out = _run(
        tmp_path, "--config", str(file), "--fps", "3",
        env={"EDGEFLEET_AGENT_OTA_POLL": "4", "EDGEFLEET_AGENT_MQTT": ""},
    )  # fmt: skip
    assert code == 0, out
    (config,) = built.configs
    assert config.fps == 3.0  # flag over file
    assert config.ota is not None and config.ota.poll_interval_s == 4.0  # env over file
    assert config.ota.probation_s == 9.0  # file over default
    assert config.mqtt_url == "mqtt://file:1"  # an empty variable is no value
    assert config.heartbeat_interval_s == 5.0  # default


def test_a_bad_file_value_is_one_clear_error(tmp_path: Path, built: _Built) -> None:
    file = tmp_path / "agent.toml"
    file.write_text("fps = -1\n")
    code, out = _run(tmp_path, "--config", str(file))
    assert code == 2 and "fps" in out and built.configs == [], out
    file.write_text("frames_per_second = 1\n")
    code, out = _run(tmp_path, "--config", str(file))
    assert code == 2 and "unknown option 'frames_per_second'" in out, out


def test_probation_latency_budget_defaults_to_the_frame_period(tmp_path: Path) -> None:
    ota = OtaSettings()
    assert AgentConfig(tmp_path, ota=ota, fps=30).probation_latency_budget_ms == 1000 / 30
    assert AgentConfig(tmp_path, ota=ota).probation_latency_budget_ms == UNPACED_LATENCY_BUDGET_MS
    explicit = OtaSettings(latency_budget_ms=12.0)
    assert AgentConfig(tmp_path, ota=explicit, fps=30).probation_latency_budget_ms == 12.0
    off = OtaSettings(latency_budget_ms=0.0)
    assert AgentConfig(tmp_path, ota=off, fps=30).probation_latency_budget_ms is None
