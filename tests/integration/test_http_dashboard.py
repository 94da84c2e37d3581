"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, Selenium) on a
real controller: login refused with a wrong token, then overview (paged), a device page with its
plots, rollouts with stages and gates, models. Screenshots are saved in the test's tmp dir, their
paths printed (pytest -s) and attached (record_property). Without a session, the pages answer
401 or redirect to the login; a POST without the session's CSRF token is refused."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from controller.app import Controller
from controller.rollout import RolloutSpec, RolloutState
from controller.rollout.gates import GateResult
from controller.rollout.model import DeviceRollout
from tests.fleet import start_controller
from tests.http_seed import SeededFleet, seed_fleet

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEVICES = 60  # two pages of the overview


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Controller, SeededFleet]]:
    controller = start_controller(tmp_path_factory.mktemp("dash"), rollout_tick_s=3600.0)
    try:
        seeded = seed_fleet(controller, DEVICES, reports_each=30, now_ms=int(time.time() * 1000))
        _add_rollout(controller, seeded)
        yield controller, seeded
    finally:
        controller.stop()


def _add_rollout(controller: Controller, fleet: SeededFleet) -> None:
    """A rollout in its second stage, stored through the rollout store as the engine would."""
    devices = tuple(
        DeviceRollout(
            d, "generic-cpu", "healthy" if i < 3 else "assigned", None, "v2", stage=i // 3
        )
        for i, d in enumerate(sorted(fleet.device_ids[:6]))
    )
    gates = (
        GateResult("accuracy", "accuracy", "pass", 0.93, 0.9, "within budget", 0.91, 0.95),
        GateResult("latency", "p95_latency_ms", "insufficient", None, 40.0, "12 of 100 frames"),
    )
    state = RolloutState(phase="soaking", stage_index=1, devices=devices, last_gates=gates)
    spec = RolloutSpec("r-dash", "fashion-edge", 1, stages=(0.05, 0.25, 1.0))
    controller.rollouts.store.create(spec, state)


def _login_session(base: str, token: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/login", timeout=5).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    answer = session.post(
        f"{base}/login",
        data={"token": token, "csrf_token": csrf.group(1)},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 303, answer.text
    return session


def _csrf(session: requests.Session, url: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url, timeout=5).text)
    assert found is not None
    return found.group(1)


def test_nothing_readable_without_a_session(fleet: tuple[Controller, SeededFleet]) -> None:
    controller, seeded = fleet
    base = controller.http_url
    for path in ("/", f"/devices/{seeded.device_ids[0]}", "/rollouts", "/models", "/alerts"):
        answer = requests.get(base + path, allow_redirects=False, timeout=5)
        assert answer.status_code == 401, path
        assert seeded.names[0] not in answer.text
        browser = requests.get(
            base + path, headers={"accept": "text/html"}, allow_redirects=False, timeout=5
        )
        assert (browser.status_code, browser.headers["location"]) == (303, "/login"), path
    # a forged session cookie is not a session
    forged = requests.get(base + "/", cookies={"edgefleet_session": "e30=.x.y"}, timeout=5)
    assert forged.status_code == 401


def test_login_and_actions_need_the_csrf_token(fleet: tuple[Controller, SeededFleet]) -> None:
    controller, _ = fleet
    base = controller.http_url
    # a login post without the token of a form the server handed out
    answer = requests.post(
        f"{base}/login", data={"token": controller.operator_token}, allow_redirects=False,
        timeout=5,
    )  # fmt: skip
    assert answer.status_code == 403
    anonymous = requests.Session()
    csrf = _csrf(anonymous, f"{base}/login")
    wrong = anonymous.post(
        f"{base}/login", data={"token": "not-the-token", "csrf_token": csrf}, timeout=5
    )
    assert wrong.status_code == 401 and "not the operator token" in wrong.text
    assert anonymous.get(f"{base}/", timeout=5).status_code == 401

    session = _login_session(base, controller.operator_token)
    assert session.get(f"{base}/", timeout=5).status_code == 200
    pause = f"{base}/rollouts/r-dash/pause"
    assert session.post(pause, data={}, timeout=5).status_code == 403
    assert session.post(pause, data={"csrf_token": "guess"}, timeout=5).status_code == 403
    assert controller.rollouts.get("r-dash").state.phase == "soaking"
    ok = session.post(
        pause, data={"csrf_token": _csrf(session, f"{base}/rollouts")}, allow_redirects=False,
        timeout=5,
    )  # fmt: skip
    assert ok.status_code == 303, ok.text
    assert controller.rollouts.get("r-dash").state.phase == "paused"
    resume = session.post(
        f"{base}/rollouts/r-dash/resume", data={"csrf_token": _csrf(session, f"{base}/")},
        allow_redirects=False, timeout=5,
    )  # fmt: skip
    assert resume.status_code == 303
    assert controller.rollouts.get("r-dash").state.phase == "soaking"
    # logging out ends the session
    session.post(f"{base}/logout", data={"csrf_token": _csrf(session, f"{base}/")}, timeout=5)
    assert session.get(f"{base}/", timeout=5).status_code == 401


@pytest.mark.skipif(
    not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()),
    reason="chromium and chromium-driver are not installed (scripts/bootstrap.sh)",
)
def test_dashboard_in_chromium(
    fleet: tuple[Controller, SeededFleet],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    controller, seeded = fleet
    base = controller.http_url
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(15)
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = tmp_path / f"dashboard-{name}.png"
        driver.save_screenshot(str(path))
        shots.append(path)
        print(f"screenshot: {path}")
        record_property(f"screenshot-{name}", str(path))

    try:
        driver.get(base + "/")
        assert driver.current_url == base + "/login"
        driver.find_element(By.ID, "token").send_keys("wrong-token")
        driver.find_element(By.ID, "login-submit").click()
        error = WebDriverWait(driver, 10).until(
            expected_conditions.presence_of_element_located((By.ID, "login-error"))
        )
        assert "not the operator token" in error.text
        shot("login-refused")

        driver.find_element(By.ID, "token").send_keys(controller.operator_token)
        driver.find_element(By.ID, "login-submit").click()
        WebDriverWait(driver, 10).until(expected_conditions.url_to_be(base + "/"))
        cookie = driver.get_cookie("edgefleet_session")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert driver.find_element(By.ID, "devices-total").text == str(DEVICES)
        driver.get(base + "/?window=1h")  # the default 60 s may be past the seeded reports
        rows = driver.find_elements(By.CSS_SELECTOR, "#devices tr")
        assert len(rows) == 1 + 50  # header + one page
        assert seeded.names[0] in rows[1].text and "%" in rows[1].text
        shot("overview")
        driver.find_element(By.ID, "next-page").click()
        WebDriverWait(driver, 10).until(expected_conditions.url_contains("page=2"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#devices tr")) == 1 + DEVICES - 50

        driver.get(f"{base}/devices/{seeded.device_ids[0]}?window=10m")
        assert driver.find_element(By.ID, "device-name").text.startswith(seeded.names[0])
        plots = driver.find_elements(By.CSS_SELECTOR, "svg.plot")
        assert len(plots) == 5
        titles = [p.get_attribute("aria-label") for p in plots]
        assert titles[0] == "Latency (end to end)" and titles[2] == "Estimated accuracy"
        # 30 reports over the last 5 minutes: lines with points, the accuracy band, the bars
        latency_line = plots[0].find_elements(By.CSS_SELECTOR, "polyline.series")
        assert len(latency_line) == 2
        assert len(latency_line[0].get_attribute("points").split()) >= 20
        assert plots[2].find_elements(By.CSS_SELECTOR, "polygon.band")
        assert plots[4].find_elements(By.CSS_SELECTOR, "rect.bar")
        shot("device")

        driver.get(base + "/rollouts")
        section = driver.find_element(By.ID, "rollout-r-dash")
        assert "soaking" in section.text and "accuracy" in section.text
        assert "0.93" in section.text and "[0.91, 0.95]" in section.text
        assert "healthy: 3" in section.text and "assigned: 3" in section.text
        shot("rollouts")
        driver.get(base + "/models")
        model = driver.find_element(By.CSS_SELECTOR, "section.model").text
        assert "fashion-edge:1" in model and "onnx-int8" in model and "90.0%" in model
        driver.get(base + "/alerts")
        events = driver.find_element(By.TAG_NAME, "main").text
        assert "device.registered" in events and f"registered {seeded.names[0]}" in events
        shot("alerts")
    finally:
        driver.quit()
    assert all(p.stat().st_size > 5000 for p in shots)


def test_wrong_tokens_are_bounded_per_address(tmp_path: Path) -> None:
    """Ten wrong login or metrics tokens a minute from one address; then 429 before the token
    is looked at, the right one included (as for gRPC credentials)."""
    controller = start_controller(tmp_path, metrics_token="metrics-secret")
    try:
        base = controller.http_url
        session = requests.Session()
        for i in range(10):
            if i % 2:
                answer = session.get(
                    f"{base}/metrics", headers={"authorization": "Bearer wrong"}, timeout=5
                )
            else:
                answer = session.post(
                    f"{base}/login",
                    data={"token": "wrong", "csrf_token": _csrf(session, f"{base}/login")},
                    timeout=5,
                )
            assert answer.status_code == 401, i
        right = session.post(
            f"{base}/login",
            data={
                "token": controller.operator_token,
                "csrf_token": _csrf(session, f"{base}/login"),
            },
            timeout=5,
        )
        assert right.status_code == 429 and "retry in" in right.text
        scrape = requests.get(
            f"{base}/metrics", headers={"authorization": "Bearer metrics-secret"}, timeout=5
        )
        assert scrape.status_code == 429
    finally:
        controller.stop()


def test_overview_pages_and_search(fleet: tuple[Controller, SeededFleet]) -> None:
    controller, seeded = fleet
    base = controller.http_url
    session = _login_session(base, controller.operator_token)

    def names(url: str) -> list[str]:
        page = session.get(url, timeout=5)
        assert page.status_code == 200
        return re.findall(r'<a href="/devices/[^"]+">([^<]+)</a>', page.text)

    assert names(f"{base}/") == sorted(seeded.names)[:50]
    assert names(f"{base}/?page=2") == sorted(seeded.names)[50:]
    assert names(f"{base}/?page=99") == sorted(seeded.names)[50:]  # past the end: the last
    assert names(f"{base}/?q=cam-001") == [f"cam-001{i}" for i in range(10)]
    assert names(f"{base}/?q=%25") == []  # LIKE wildcards are plain characters
    assert names(f"{base}/?q={seeded.device_ids[3]}") == [seeded.names[3]]
    assert session.get(f"{base}/?page=x", timeout=5).status_code == 400
    assert session.get(f"{base}/?window=7m", timeout=5).status_code == 400
    assert session.get(f"{base}/devices/no-such-device", timeout=5).status_code == 404


def test_https_with_the_controller_certificate(tmp_path: Path) -> None:
    """--http-tls: the controller's own CA verifies the server; the session cookie is Secure."""
    controller = start_controller(tmp_path, http_tls=True)
    try:
        base = controller.http_url
        assert base.startswith("https://")
        ca = str(tmp_path / "pki" / "ca.pem")
        session = requests.Session()  # verify per call: REQUESTS_CA_BUNDLE beats session.verify
        assert session.get(f"{base}/healthz", verify=ca, timeout=5).text == "ok\n"
        session.get(f"{base}/login", verify=ca, timeout=5)
        (cookie,) = session.cookies
        assert cookie.name == "edgefleet_session" and cookie.secure
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{base}/healthz", timeout=5)  # not without the controller's CA
    finally:
        controller.stop()


def test_a_new_operator_token_ends_old_sessions(tmp_path: Path) -> None:
    controller = start_controller(tmp_path / "c")
    base = controller.http_url
    session = _login_session(base, controller.operator_token)
    assert session.get(f"{base}/", timeout=5).status_code == 200
    controller.stop()
    (tmp_path / "c" / "operator.token").write_text("a-rotated-operator-token")
    controller = start_controller(tmp_path / "c", http_port=0)
    try:
        cookie = session.cookies.get("edgefleet_session")
        answer = requests.get(
            f"{controller.http_url}/", cookies={"edgefleet_session": cookie}, timeout=5
        )
        assert answer.status_code == 401  # signed with the same key, but for the old token
        new = _login_session(controller.http_url, "a-rotated-operator-token")
        assert new.get(f"{controller.http_url}/", timeout=5).status_code == 200
    finally:
        controller.stop()
