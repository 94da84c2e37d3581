"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a real controller's /metrics, with
the scrape config of deploy/prometheus/prometheus.yml, and its query API returns the values
the controller's telemetry holds. A job without the metrics token is refused (up == 0)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, free_port, wait_until
from tests.fleet import start_controller
from tests.http_seed import VARIANT_ID, seed_fleet
from tests.unit.test_grafana_dashboard import expressions as grafana_expressions

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(), reason="prometheus is not installed (scripts/bootstrap.sh)"
)
TOKEN = "scrape-token-for-the-test"


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _served_families(base: str) -> set[str]:
    request = urllib.request.Request(
        f"{base}/metrics", headers={"authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    names = re.findall(r"^# TYPE (edgefleet_[a-z_]+)", text, re.MULTILINE)
    return {re.sub(r"_total$", "", n) for n in names}


def _scrape_config(tmp: Path, http_port: int) -> Path:
    """deploy/prometheus/prometheus.yml pointed at the test controller, scraping every second,
    plus a job without credentials."""
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(REPO / "deploy/prometheus" / f) for f in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{http_port}"]}]
    (tmp / "metrics.token").write_text(TOKEN)
    job["authorization"]["credentials_file"] = str(tmp / "metrics.token")
    anonymous = {k: v for k, v in job.items() if k != "authorization"}
    config["scrape_configs"].append({**anonymous, "job_name": "anonymous"})
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_prometheus_scrapes_device_metrics(tmp_path: Path) -> None:
    # a 10-minute /metrics window: the seeded reports stay in it however slow the machine is
    controller = start_controller(tmp_path / "c", metrics_token=TOKEN, metrics_window_s=600.0)
    process = None
    try:
        now_ms = int(time.time() * 1000)
        fleet = seed_fleet(controller, devices=3, reports_each=3, now_ms=now_ms)
        port = free_port()
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={_scrape_config(tmp_path, controller.http_port)}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("w"),
        )

        def frames() -> list[dict[str, Any]]:
            try:
                return _query(port, f'edgefleet_device_frames{{device="{fleet.device_ids[0]}"}}')
            except OSError:
                return []

        assert wait_until(frames, 20.0, 0.2), (tmp_path / "prometheus.log").read_text()[-2000:]
        (sample,) = frames()
        # 3 reports of 200 frames, all inside the window
        assert float(sample["value"][1]) == 600.0
        # the device's name and variant are on its info series, joined as a dashboard would
        (joined,) = _query(
            port,
            "edgefleet_device_frames * on (device) group_left (name, variant) "
            f'edgefleet_device_info{{name="{fleet.names[0]}"}}',
        )
        assert joined["metric"]["device"] == fleet.device_ids[0]
        assert joined["metric"]["variant"] == VARIANT_ID
        assert float(joined["value"][1]) == 600.0

        def up() -> dict[str, float]:
            return {r["metric"]["job"]: float(r["value"][1]) for r in _query(port, "up")}

        assert wait_until(lambda: len(up()) == 2, 10.0, 0.2)
        assert up() == {"edgefleet": 1.0, "anonymous": 0.0}

        # the cumulative latency histogram: every reported frame of the three devices
        (count,) = _query(port, 'edgefleet_frame_latency_ms_count{job="edgefleet"}')
        assert float(count["value"][1]) == 3 * 3 * 200
        (p50,) = _query(
            port, "histogram_quantile(0.5, sum by (le) (edgefleet_frame_latency_ms_bucket))"
        )
        assert 2.5 <= float(p50["value"][1]) <= 50.0  # seeded latencies are 4-30 ms
        device = fleet.device_ids[1]

        def gauge(name: str) -> float:
            return float(_query(port, f'{name}{{device="{device}"}}')[0]["value"][1])

        value, low, high = (
            gauge(f"edgefleet_device_accuracy_{kind}") for kind in ("estimate", "low", "high")
        )
        assert 0.0 <= low <= value <= high <= 1.0
        (received,) = _query(port, 'edgefleet_telemetry_reports_total{outcome="written"}')
        assert float(received["value"][1]) == 9

        # deploy/prometheus/alerts.yml loads and its rules evaluate on these metrics
        def rules() -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as r:
                groups = json.load(r)["data"]["groups"]
            return [rule for g in groups for rule in g["rules"]]

        assert wait_until(lambda: all(r.get("lastEvaluation", "0").startswith("2")
                                      for r in rules()), 10.0, 0.2)  # fmt: skip
        assert rules() and all(r["health"] == "ok" for r in rules()), rules()

        # every query of the Grafana dashboard is valid PromQL on what the controller serves
        served = _served_families(controller.http_url)
        for expr in grafana_expressions():
            used = set(re.findall(r"\bedgefleet_[a-z_]+", re.sub(r'"[^"]*"', "", expr)))
            assert {re.sub(r"_(bucket|total)$", "", n) for n in used} <= served, expr
            _query(port, expr.replace("$device", ".*"))  # status success
        per_device = _query(port, grafana_expressions()[4].replace("$device", ".*"))
        assert {r["metric"]["name"] for r in per_device} == set(fleet.names)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        controller.stop()
