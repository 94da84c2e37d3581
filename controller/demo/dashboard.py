"""Story: the controller's HTTP side. Scrape /metrics once as Prometheus would (parsed with
prometheus_client's own parser) and print what it says about each device; log in to the
dashboard as a browser would (login form, CSRF token, session cookie), fetch the overview and
one device page, and print the URL and how to log in while the demo's controller runs."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from controller.demo.context import DemoFailed, DemoRun

TIMEOUT_S = 10.0
SHOWN = {
    "edgefleet_device_fps": "fps",
    "edgefleet_device_offload_rate": "offload",
    "edgefleet_device_accuracy_estimate": "accuracy",
    "edgefleet_device_drift_psi": "drift PSI",
}


def story(demo: DemoRun) -> None:
    c = demo.controller
    base = c.http_url
    demo.step(f"dashboard and Prometheus /metrics at {base}")
    per_device, alerts, took_ms, size = _scrape(base)
    names = {d.device_id: d.name for d in c.registry.list_devices()}
    demo.say(f"/metrics: {size / 1024:.0f} KiB in {took_ms:.0f} ms; per device over the last "
             f"{c.config.metrics_window_s:.0f} s:")  # fmt: skip
    for device_id, values in sorted(per_device.items(), key=lambda kv: names.get(kv[0], "")):
        shown = ", ".join(
            f"{label} {values[name]:.2f}" for name, label in SHOWN.items() if name in values
        )
        demo.say(f"  {names.get(device_id, device_id)}: {shown or 'no report in the window'}")
    demo.say(
        "  open alerts by rule: " + (", ".join(f"{r} {n}" for r, n in alerts.items()) or "none")
    )

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    _log_in(opener, base, c.operator_token)
    started = time.perf_counter()
    overview = _get(opener, f"{base}/")
    overview_ms = (time.perf_counter() - started) * 1000
    missing = [n for n in names.values() if n not in overview]
    if missing:
        raise DemoFailed(f"the dashboard overview does not list {', '.join(missing)}")
    shown_ids = sorted(per_device) or sorted(names)
    plots = 0
    if shown_ids:
        page = _get(opener, f"{base}/devices/{shown_ids[0]}?window=10m")
        plots = page.count('<svg class="plot"')
    demo.say(
        f"dashboard: logged in with the operator token; overview lists all {len(names)} devices "
        f"({overview_ms:.0f} ms), a device page has {plots} plots"
    )
    demo.say(
        f"open {base}/ while the demo runs and paste the operator token from "
        f"{c.config.data_dir / 'operator.token'} (`edgefleet controller serve` prints the same)"
    )


def _scrape(base: str) -> tuple[dict[str, dict[str, float]], dict[str, int], float, int]:
    started = time.perf_counter()
    text = _get(urllib.request.build_opener(), f"{base}/metrics")
    took_ms = (time.perf_counter() - started) * 1000
    per_device: dict[str, dict[str, float]] = defaultdict(dict)
    alerts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in SHOWN:
                per_device[sample.labels["device"]][sample.name] = sample.value
            elif sample.name == "edgefleet_alerts_active":
                alerts[sample.labels["rule"]] = int(sample.value)
    return dict(per_device), alerts, took_ms, len(text)


def _log_in(opener: urllib.request.OpenerDirector, base: str, token: str) -> None:
    form = _get(opener, f"{base}/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if csrf is None:
        raise DemoFailed("the dashboard's login form has no CSRF token")
    body = urllib.parse.urlencode({"token": token, "csrf_token": csrf.group(1)}).encode()
    page = _get(opener, f"{base}/login", body)
    if "Log out" not in page:
        raise DemoFailed("the dashboard refused the operator token")


def _get(opener: urllib.request.OpenerDirector, url: str, data: bytes | None = None) -> str:
    try:
        with opener.open(url, data=data, timeout=TIMEOUT_S) as answer:
            return str(answer.read().decode())
    except OSError as exc:
        raise DemoFailed(f"{url}: {exc}") from exc
