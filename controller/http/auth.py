"""Who may read what over HTTP.

Dashboard: the operator logs in with the operator token (``<data-dir>/operator.token``, the
one the CLI uses). Success stores ``operator`` in Starlette's signed session cookie (HttpOnly,
SameSite=Strict, Secure under TLS, 8 h); every page but the login form needs it (a browser is
redirected to ``/login``, anything else gets 401). CSRF: the session holds a random token that
every form carries in a hidden field; a POST whose field does not match is refused (403), and
that includes the login form itself (its token is set when the form is shown).

``/metrics``: open unless ``metrics_token`` is set; then it needs ``Authorization: Bearer
<token>`` (Prometheus: ``authorization: {credentials: ...}`` in the scrape config).

Wrong tokens (login or metrics) count against the caller's address as on the gRPC side
(controller.grpc.throttle: 10 a minute per address, then 429 before the token is looked at).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

SESSION_OPERATOR = "operator"
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 8 * 3600


def same_secret(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF] = token
    return token


def csrf_ok(session: Mapping[str, Any], form: Mapping[str, Any]) -> bool:
    expected = session.get(SESSION_CSRF)
    given = form.get(CSRF_FIELD)
    return isinstance(expected, str) and isinstance(given, str) and same_secret(given, expected)


def token_mark(token: str) -> str:
    """What a session keeps of the operator token it logged in with: a new token (the file
    rewritten, the controller restarted) ends every session made with the old one."""
    return hashlib.sha256(b"edgefleet-dashboard-session:" + token.encode()).hexdigest()[:32]


def logged_in(request: Request, operator_token: str) -> bool:
    mark = request.session.get(SESSION_OPERATOR)
    return isinstance(mark, str) and same_secret(mark, token_mark(operator_token))


def log_in(session: dict[str, Any], operator_token: str) -> None:
    """A new CSRF token with the new session state (no token from before the login lives on)."""
    session.clear()
    session[SESSION_OPERATOR] = token_mark(operator_token)
    csrf_token(session)


def bearer_ok(request: Request, expected: str) -> bool:
    """True when no token is required, or the request carries it."""
    if not expected:
        return True
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and same_secret(value.strip(), expected)


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")
