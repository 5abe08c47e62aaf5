"""What every page of the browser UI shares: the session (signed cookie, CSRF token),
templates, the navigation, and how errors are shown.

A signed-in browser carries a signed session cookie (HttpOnly, SameSite=Strict); every form
echoes the session's CSRF token. The same role table as the API decides what each page and
action allows; the same service functions (:mod:`countenance.api.service`) do the work.

Example::

    @router.get("/audit")
    def auditpage(request: Request, session: SessionDep) -> HTMLResponse:
        return denied(request, session, "audit.read") or page(request, session, "audit.html")
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from countenance.api.auth import (
    REVOKED_FILE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Principal,
    RevokedSessions,
    Sessions,
    SessionToken,
    server_secret,
)
from countenance.api.errors import ApiError, status_of
from countenance.api.state import ServerState
from countenance.errors import CountenanceError

LOGIN_CSRF = "countenance_login_csrf"

NAV = [  # (path, label, permission)
    ("/search", "Search", "search"),
    ("/people", "People", "people.read"),
    ("/alerts", "Alerts", "watch"),
    ("/sources", "Sources", "sources.read"),
    ("/policy", "Policy", "policy.read"),
    ("/erasures", "Erasures", "erase"),
    ("/audit", "Audit log", "audit.read"),
]


class NeedSignIn(Exception):
    """No valid session: the browser is sent to the sign-in page."""


def templates() -> Jinja2Templates:
    env = Environment(
        loader=PackageLoader("countenance.web", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    return Jinja2Templates(env=env)


_TEMPLATES = templates()


def install(app: FastAPI, *, always_secure: bool = False) -> None:
    """Add what the pages need to the app: the session signer and the sign-in redirect.
    With ``always_secure`` (behind a TLS proxy) cookies are marked Secure whatever scheme
    the request arrived by."""
    state: ServerState = app.state.server
    data_dir = state.engine.data_dir
    app.state.sessions = Sessions(server_secret(data_dir), RevokedSessions(data_dir / REVOKED_FILE))
    app.state.secure_cookies = always_secure

    async def to_login(request: Request, _exc: Exception) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    app.add_exception_handler(NeedSignIn, to_login)


# sessions ----------------------------------------------------------------------------------


class Session:
    """The signed-in principal of a page request and its CSRF token."""

    def __init__(self, principal: Principal, token: SessionToken) -> None:
        self.principal = principal
        self.token = token
        self.csrf = token.csrf

    def check(self, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf):
            raise ApiError(
                403, "csrf", "the form's CSRF token is missing or stale; reload the page"
            )


def _session(request: Request) -> Session:
    state: ServerState = request.app.state.server
    token = request.app.state.sessions.read(request.cookies.get(SESSION_COOKIE))
    if token is None:
        raise NeedSignIn
    info = state.keys.live(token.key_id)  # a revoked key's sessions end with it
    if info is None:
        raise NeedSignIn
    state.limiter.check(info.name)
    return Session(Principal(info.id, info.name, info.role), token)


SessionDep = Annotated[Session, Depends(_session)]


def secure_cookies(request: Request) -> bool:
    """Whether cookies are marked Secure: over https, or always behind a trusted TLS proxy
    (which may reach us over plain http)."""
    return request.url.scheme == "https" or bool(request.app.state.secure_cookies)


def set_login_csrf(request: Request, response: Response, token: str) -> None:
    """The sign-in form's CSRF token, as a cookie the form's post must match."""
    response.set_cookie(
        LOGIN_CSRF,
        token,
        httponly=True,
        samesite="strict",
        max_age=900,
        secure=secure_cookies(request),
    )


def start_session(request: Request, response: Response, key_id: int) -> None:
    """Sign the browser in as API key ``key_id``: a new session cookie on ``response``."""
    response.set_cookie(
        SESSION_COOKIE,
        request.app.state.sessions.issue(key_id),
        httponly=True,
        samesite="strict",
        max_age=SESSION_SECONDS,
        secure=secure_cookies(request),
    )


def end_session(request: Request, response: Response, session: Session) -> None:
    """Sign out: the session is revoked on the server (a copy of the cookie stops working
    too) and the browser told to drop it."""
    request.app.state.sessions.revoke(session.token)
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=secure_cookies(request)
    )


def server(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def page(
    request: Request,
    session: Session | None,
    name: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    nav = []
    if session is not None:
        nav = [(p, label) for p, label, perm in NAV if session.principal.can(perm)]
    return _TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "principal": session.principal if session else None,
            "csrf": session.csrf if session else "",
            "nav": nav,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


def denied(request: Request, session: Session, permission: str) -> HTMLResponse | None:
    if session.principal.can(permission):
        return None
    return page(
        request,
        session,
        "error.html",
        status_code=403,
        message=f"The {session.principal.role} role may not open this page ({permission}).",
    )


def error_message(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, ApiError):
        return exc.message, exc.status
    if isinstance(exc, CountenanceError):
        return str(exc), status_of(exc)
    raise exc
