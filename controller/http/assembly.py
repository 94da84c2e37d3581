"""Builds the HTTP server from a controller's parts (called by ``build_controller``)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING

from controller.http.app import HttpSettings, build_http_app
from controller.http.artifact_metrics import artifact_families
from controller.http.metrics import LatencyHistograms, MetricsSources, metrics_registry
from controller.http.monitoring_metrics import monitoring_families
from controller.http.server import HttpServer, TlsFiles
from controller.http.views import DashboardSources
from controller.http.windows import DeviceWindows
from controller.mqtt.hosts import is_loopback

if TYPE_CHECKING:
    from controller.app import Controller

log = logging.getLogger(__name__)


def start_http(
    c: Controller,
    stack: ExitStack,
    latency: LatencyHistograms,
    windows: DeviceWindows,
    session_secret: str,
) -> HttpServer:
    cfg = c.config
    metrics = MetricsSources(
        registry=c.registry,
        telemetry=c.telemetry,
        rollouts=lambda: c.rollouts.store.rollouts(),
        ingest_stats=lambda: c.ingest.stats,
        served_models=c.cloud_models.served,
        offload_pairs=c.offload_pairs,
        latency=latency,
        windows=windows,
        baseline=c.monitor.baselines.get,
        extra=[
            monitoring_families(c.monitoring.alerts, c.offload_budgets),
            artifact_families(c.model_parts.artifact_traffic),
        ],
    )
    dashboard = DashboardSources(
        db=c.db,
        registry=c.registry,
        telemetry=c.telemetry,
        rollouts=c.rollouts,
        models=c.models,
        events=c.monitoring.events,
        alerts=c.monitoring.alerts,
        baseline=c.monitor.baselines.get,
    )
    app = build_http_app(
        dashboard,
        metrics_registry(metrics),
        HttpSettings(
            operator_token=c.operator_token,
            session_secret=session_secret,
            metrics_token=cfg.metrics_token,
            secure_cookies=cfg.http_tls,
        ),
    )
    if not is_loopback(cfg.http_host):
        if not cfg.metrics_token:
            log.warning("HTTP on %s without a metrics token: anyone who reaches it reads "
                        "/metrics (--metrics-token)", cfg.http_host)  # fmt: skip
        if not cfg.http_tls:
            log.warning("HTTP on %s without TLS: the operator token and the dashboard session "
                        "cross the network in the clear (--http-tls)", cfg.http_host)  # fmt: skip
    pki = cfg.data_dir / "pki"
    tls = TlsFiles(pki / "server.pem", pki / "server.key") if cfg.http_tls else None
    server = HttpServer(app, cfg.http_host, cfg.http_port, tls)
    server.start()
    stack.callback(server.stop)
    return server
