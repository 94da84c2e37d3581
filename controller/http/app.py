"""The controller's HTTP app (Starlette): ``/metrics``, the dashboard, its login.

Thin: each route checks who is asking (controller.http.auth), asks controller.http.views for
the page's values (in a worker thread: the store is synchronous) and renders a Jinja2 template
(autoescaped). Pages load nothing from another origin; the Content-Security-Policy says so.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.grpc.throttle import CredentialThrottle, caller_address
from controller.http import auth, views
from controller.http.series import window_ms
from edgefleet.errors import (
    AlreadyExists,
    EdgeFleetError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip
DASHBOARD_COMMANDS = ("pause", "resume", "abort")
MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class HttpSettings:
    operator_token: str
    session_secret: str
    metrics_token: str = ""
    secure_cookies: bool = False  # set under TLS


_STATUS = (
    (NotFound, 404), (InvalidInput, 400), (FailedPrecondition, 409), (AlreadyExists, 409),
    (Unauthenticated, 401), (PermissionDenied, 403), (ResourceExhausted, 429),
    (Unavailable, 503),
)  # fmt: skip


def _address(request: Request) -> str:
    """The caller's address as the gRPC side counts failed credentials (IPv6 by its /64)."""
    host = request.client.host if request.client else ""
    return caller_address(f"ipv6:[{host}]:0" if ":" in host else f"ipv4:{host}:0")


def _status_of(exc: EdgeFleetError) -> int:
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


class SecurityHeaders:
    """Adds SECURITY_HEADERS (and no-store for pages) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


Endpoint = Callable[[Request], Awaitable[Response]]


def build_http_app(
    sources: views.DashboardSources, metrics: CollectorRegistry, settings: HttpSettings
) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    throttle = CredentialThrottle()  # failed logins and metrics tokens, per address
    templates.env.filters["timestamp"] = lambda s: time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime(s)
    )
    css = (HERE / "static" / "dashboard.css").read_text()

    def page(request: Request, name: str, **context: Any) -> Response:
        context["csrf"] = auth.csrf_token(request.session)
        context["path"] = request.url.path
        return templates.TemplateResponse(request, name, context)

    def login_required(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            if not auth.logged_in(request, settings.operator_token):
                if request.method == "GET" and auth.wants_html(request):
                    return RedirectResponse("/login", status_code=303)
                return PlainTextResponse("log in first (POST /login)\n", status_code=401)
            try:
                return await endpoint(request)
            except EdgeFleetError as exc:
                status = _status_of(exc)
                if status >= 500:
                    log.warning("dashboard %s: %s", request.url.path, exc)
                return PlainTextResponse(f"{exc}\n", status_code=status)
            except ValueError as exc:  # a query parameter out of its range
                return PlainTextResponse(f"{exc}\n", status_code=400)

        return guarded

    async def read_form(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:  # forms say how long they are
            raise InvalidInput(f"a form needs a Content-Length of at most {MAX_FORM_BYTES} bytes")
        form = await request.form(max_files=0, max_fields=16)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def window_of(request: Request, default: str) -> tuple[str, int]:
        window = request.query_params.get("window", default)
        return window, window_ms(window, views.WINDOWS)

    def refused(request: Request) -> Response | None:
        """429 while the caller's address is over its bound of failed credentials."""
        try:
            throttle.check(_address(request))
        except ResourceExhausted as exc:
            return PlainTextResponse(f"{exc}\n", status_code=429)
        return None

    async def metrics_endpoint(request: Request) -> Response:
        if settings.metrics_token and (answer := refused(request)) is not None:
            return answer
        if not auth.bearer_ok(request, settings.metrics_token):
            throttle.failed(_address(request))
            return PlainTextResponse(
                "metrics need Authorization: Bearer <metrics token>\n",
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        body = await run_in_threadpool(generate_latest, metrics)
        if "gzip" not in request.headers.get("accept-encoding", ""):
            return Response(body, media_type=CONTENT_TYPE_LATEST)
        # as Prometheus asks (pages are not compressed: they reflect input next to a secret)
        packed = await run_in_threadpool(gzip.compress, body, 1)
        headers = {"content-encoding": "gzip", "vary": "accept-encoding"}
        return Response(packed, media_type=CONTENT_TYPE_LATEST, headers=headers)

    async def login_form(request: Request) -> Response:
        return page(request, "login.html", error="")

    async def login(request: Request) -> Response:
        try:
            form = await read_form(request)
        except InvalidInput as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        if not auth.csrf_ok(request.session, form):
            return PlainTextResponse("CSRF token missing or wrong\n", status_code=403)
        if (answer := refused(request)) is not None:
            return answer
        if not auth.same_secret(str(form.get("token", "")).strip(), settings.operator_token):
            throttle.failed(_address(request))
            log.warning("dashboard login refused from %s", _address(request))
            response = page(request, "login.html", error="That is not the operator token.")
            response.status_code = 401
            return response
        auth.log_in(request.session, settings.operator_token)
        return RedirectResponse("/", status_code=303)

    @login_required
    async def logout(request: Request) -> Response:
        if not auth.csrf_ok(request.session, await read_form(request)):
            return PlainTextResponse("CSRF token missing or wrong\n", status_code=403)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @login_required
    async def overview(request: Request) -> Response:
        window, span = window_of(request, "60s")
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError:
            raise InvalidInput("page must be a number") from None
        query = request.query_params.get("q", "")[:128]
        data = await run_in_threadpool(views.overview, sources, number, query, span, window)
        return page(request, "overview.html", o=data, windows=views.WINDOWS)

    @login_required
    async def device(request: Request) -> Response:
        window, span = window_of(request, "1h")
        device_id = request.path_params["device_id"]
        data = await run_in_threadpool(views.device_page, sources, device_id, span, window)
        return page(request, "device.html", d=data, windows=views.WINDOWS)

    @login_required
    async def rollouts(request: Request) -> Response:
        data = await run_in_threadpool(views.rollout_views, sources)
        return page(request, "rollouts.html", rollouts=data, commands=DASHBOARD_COMMANDS)

    @login_required
    async def rollout_command(request: Request) -> Response:
        if not auth.csrf_ok(request.session, await read_form(request)):
            return PlainTextResponse("CSRF token missing or wrong\n", status_code=403)
        kind = request.path_params["command"]
        if kind not in DASHBOARD_COMMANDS:
            raise InvalidInput(f"command must be one of {', '.join(DASHBOARD_COMMANDS)}")
        rollout_id = request.path_params["rollout_id"]
        await run_in_threadpool(sources.rollouts.command, rollout_id, kind, "from the dashboard")
        log.info("dashboard: %s rollout=%s", kind, rollout_id)
        return RedirectResponse("/rollouts", status_code=303)

    @login_required
    async def models(request: Request) -> Response:
        data = await run_in_threadpool(views.model_views, sources)
        return page(request, "models.html", reports=data)

    @login_required
    async def alerts(request: Request) -> Response:
        window, span = window_of(request, "24h")
        data = await run_in_threadpool(views.alert_views, sources, sources.now_ms() - span)
        monitoring = sources.alerts is not None or sources.events is not None
        return page(
            request, "alerts.html", a=data, window=window, windows=views.WINDOWS,
            monitoring=monitoring,
        )  # fmt: skip

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css", headers={"cache-control": "max-age=3600"})

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n")  # liveness: the process answers

    async def ready(request: Request) -> Response:
        """Readiness: the database answers (a replica without it cannot serve devices)."""
        try:
            await run_in_threadpool(views.database_reachable, sources)
        except EdgeFleetError as exc:
            log.warning("not ready: %s", exc)
            return PlainTextResponse("database unreachable\n", status_code=503)
        return PlainTextResponse("ready\n")

    routes = [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", health),
        Route("/readyz", ready),
        Route("/static/dashboard.css", stylesheet),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/devices/{device_id:str}", device),
        Route("/rollouts", rollouts),
        Route("/rollouts/{rollout_id:str}/{command:str}", rollout_command, methods=["POST"]),
        Route("/models", models),
        Route("/alerts", alerts),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=settings.session_secret,
            session_cookie="edgefleet_session",
            max_age=auth.SESSION_MAX_AGE_S,
            same_site="strict",
            https_only=settings.secure_cookies,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)
