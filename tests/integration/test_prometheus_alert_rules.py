"""deploy/prometheus/alerts.yml is valid for Prometheus (promtool check rules) and fires what
it says on series shaped like the controller's /metrics (promtool test rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) missing")

UNIT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'edgefleet_device_drift_psi{{device="dev-1"}}'
        values: '0.02 0.02 0.6 0.6 0.6 0.6 0.6'
      - series: 'edgefleet_device_drift_psi{{device="dev-2"}}'
        values: '0.05x7'
      - series: 'edgefleet_rollout_phase{{rollout="r1",model="m",version="1",phase="halted"}}'
        values: '0 0 1 1'
    alert_rule_test:
      - eval_time: 30s
        alertname: EdgeFleetConfidenceDrift
        exp_alerts: []
      - eval_time: 90s
        alertname: EdgeFleetConfidenceDrift
        exp_alerts:
          - exp_labels: {{severity: warning, device: dev-1}}
            exp_annotations:
              summary: "Device dev-1: confidence distribution shifted"
              description: "{psi_description}"
      - eval_time: 45s
        alertname: EdgeFleetRolloutHalted
        exp_alerts:
          - exp_labels: {{severity: critical, rollout: r1, model: m, version: "1", phase: halted}}
            exp_annotations:
              summary: "Rollout r1 of m:1 halted"
              description: "See edgefleet rollout status r1."
"""


PSI_DESCRIPTION = (
    "PSI of the edge model's confidence distribution against its variant's validation "
    "distribution is 0.60 (>= 0.25: a major shift)."
)


def test_rules_pass_promtool_check() -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_rules_fire_on_controller_shaped_series(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(UNIT_TESTS.format(rules=RULES, psi_description=PSI_DESCRIPTION))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
