"""deploy/grafana/edgefleet.json: a Grafana dashboard Grafana can import (structure), built on
the metrics the controller serves (tests/integration/test_http_prometheus.py runs every one of
its queries against a real Prometheus scraping a controller)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "edgefleet.json"


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_dashboard_structure() -> None:
    d = dashboard()
    assert d["title"] and d["uid"] == "edgefleet-fleet" and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["type"] in {"timeseries", "table", "stat"} and p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        cell = (g["x"], g["y"])
        assert cell not in cells, f"panels overlap at {cell}"
        cells.add(cell)
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert t["expr"].count("(") == t["expr"].count(")")


def test_queries_use_only_edgefleet_metrics() -> None:
    unquoted = [re.sub(r"'[^']*'|\"[^\"]*\"", "", e) for e in expressions()]
    names = {n for e in unquoted for n in re.findall(r"\b[a-z_]+_[a-z_]+\b", e)}
    metrics = {n for n in names if n.startswith("edgefleet_")}
    assert len(metrics) >= 15
    # nothing but our metrics and PromQL's own words
    promql = {"histogram_quantile", "group_left"}
    assert names - metrics <= promql, names - metrics - promql
