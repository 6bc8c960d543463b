"""Who looks at the console: sign-in with an LSD key that has a console role, the session cookie, CSRF tokens.

With `[gateway.auth] enabled = false` the console is open: every visitor is an admin (docs/console.md says to bind
to localhost then). With auth on, a visitor signs in with a key made with `lsd keys create --console-role ...`;
the key is checked as the API checks it (lsd.auth.AuthService) and exchanged for a random session token held in
an HttpOnly, SameSite=Strict cookie. Only the token's SHA-256 is stored (console_sessions), and the role is read
with it on every request, so disabling the key ends its sessions at once. The key itself is never kept.

Every state-changing form carries a CSRF token: the session's own with auth on; without a session (auth off, or
the sign-in form) a random token in a second SameSite=Strict cookie that the form must repeat (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.errors import Forbidden, LsdError
from lsd.runtime import Runtime
from lsd.store import console_sessions

SESSION_COOKIE = "lsd_console_session"
CSRF_COOKIE = "lsd_console_csrf"
COOKIE_PATH = "/ui"
ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = (READ_ONLY, ADMIN)
REFUSED = "this key cannot sign in to the console (missing, invalid, disabled, or without a console role)"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The visitor of one request: role, the key they signed in with (None with auth off), their CSRF token."""

    role: str  # admin | read-only | "" (not signed in)
    public_id: str | None
    csrf_token: str
    auth_enabled: bool
    new_csrf_cookie: bool = False  # the double-submit token is new: set its cookie on the response

    @property
    def admin(self) -> bool:
        return self.role == ADMIN

    @property
    def signed_in(self) -> bool:
        return self.public_id is not None

    def set_cookies(self, response: Response, *, secure: bool) -> None:
        if self.new_csrf_cookie:
            response.set_cookie(
                CSRF_COOKIE, self.csrf_token, path=COOKIE_PATH, httponly=True, samesite="strict", secure=secure
            )


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def anonymous(request: Request[Any]) -> Viewer:
    """A visitor without a session: the double-submit CSRF token from its cookie, or a new one."""
    token = request.cookies.get(CSRF_COOKIE)
    auth_enabled = _services(request).auth.enabled
    role = "" if auth_enabled else ADMIN
    if token and len(token) >= 32:
        return Viewer(role, None, token, auth_enabled)
    return Viewer(role, None, secrets.token_urlsafe(32), auth_enabled, new_csrf_cookie=True)


async def viewer(request: Request[Any]) -> Viewer | None:
    """The request's visitor; None when auth is on and there is no live session (the caller sends them to sign in)."""
    services = _services(request)
    if not services.auth.enabled:
        return anonymous(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    session = await console_sessions.find_session(services.database, digest(token))
    if session is None:
        return None
    return Viewer(session.role, session.public_id, session.csrf_token, True)


def check_form(viewer: Viewer, form: Mapping[str, str], *, admin: bool = False) -> None:
    """Refuse (403) a form without the viewer's CSRF token, or an admin action by a read-only viewer."""
    if not hmac.compare_digest(form.get("csrf", "").encode(), viewer.csrf_token.encode()):
        raise Forbidden("this form has expired or did not come from the console: reload the page and try again")
    if admin and not viewer.admin:
        raise Forbidden("the read-only console role cannot do this: sign in with an admin key")


async def sign_in(request: Request[Any], key: str) -> str:
    """Check `key` and open a session; returns the session token for the cookie. Raises Forbidden (one message
    for every refusal, as the API's 401) and DatabaseUnavailable."""
    services = _services(request)
    try:
        stored = await services.auth.verify(f"Bearer {key.strip()}")
    except LsdError as exc:
        if exc.http_status != 401:
            raise
        raise Forbidden(REFUSED) from None
    if stored.console_role not in ROLES:
        raise Forbidden(REFUSED)
    token = secrets.token_urlsafe(32)
    ttl_s = services.config.gateway.ui.session_ttl_s
    await console_sessions.create_session(
        services.database, digest(token), stored.public_id, secrets.token_urlsafe(32), ttl_s
    )
    return token


def set_session_cookie(request: Request[Any], response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=_services(request).config.gateway.ui.session_ttl_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def sign_out(request: Request[Any], response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await console_sessions.end_session(_services(request).database, digest(token))
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def _services(request: Request[Any]) -> Runtime:
    services: Runtime = request.state["services"]
    return services
