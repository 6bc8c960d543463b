"""What every console page shares: the access check, forms, time ranges, and errors rendered as pages."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from lsd.api.console import access
from lsd.api.console.access import Viewer
from lsd.api.console.render import render
from lsd.errors import InvalidRequest, LsdError, NotFound, PayloadTooLarge
from lsd.runtime import Runtime

log = logging.getLogger("lsd.api")

Handler = Callable[[Request[Any], Viewer], Awaitable[Response]]
MAX_FORM_BYTES = 1024 * 1024


def services(request: Request[Any]) -> Runtime:
    found: Runtime = request.state["services"]
    return found


def page(handler: Handler) -> Callable[[Request[Any]], Awaitable[Response]]:
    """A console endpoint: 404 with `[gateway.ui] enabled = false`; with auth on, a visitor without a session is
    sent to sign in; an LsdError becomes an HTML page with its status (a 400 names the field)."""

    async def endpoint(request: Request[Any]) -> Response:
        if not services(request).config.gateway.ui.enabled:
            raise HTTPException(404)
        try:
            viewer = await access.viewer(request)
        except LsdError as exc:  # PostgreSQL cannot answer the session lookup (503)
            return error_page(request, access.anonymous(request), exc)
        if viewer is None:
            if request.method != "GET":
                return render(request, "error.html", access.anonymous(request), 401, message=access.REFUSED)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
        try:
            _check_no_nul(request)
            return await handler(request, viewer)
        except LsdError as exc:
            return error_page(request, viewer, exc)

    return endpoint


def _check_no_nul(request: Request[Any]) -> None:
    """No page names a function, dataset, key or anything else with U+0000, which PostgreSQL's text refuses (a 500
    from the database, before): a 400 naming the parameter."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest.at(name, "must not contain U+0000")


def error_page(request: Request[Any], viewer: Viewer, exc: LsdError) -> Response:
    if exc.http_status >= 500:
        log.warning("console page failed: %s %s", exc.error_code, exc.message)
    return render(request, "error.html", viewer, exc.http_status, message=exc.message)


async def unknown_page(request: Request[Any]) -> Response:
    """Any other path under /ui: the console's own 404 page (no session needed: the console's paths are public)."""
    if not services(request).config.gateway.ui.enabled:
        raise HTTPException(404)
    return error_page(request, access.anonymous(request), NotFound(f"no console page at {request.url.path}"))


async def read_form(request: Request[Any]) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the console's forms) as a dict; the last value of a name wins."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"form: larger than {MAX_FORM_BYTES} bytes", field="body")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise InvalidRequest("form: not UTF-8", field="body") from None


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """The range picker's choice: the last `name` (1h, 24h, 7d, 30d) up to now, drawn in buckets of `step`."""

    name: str
    since: dt.datetime
    until: dt.datetime
    step: dt.timedelta

    @property
    def buckets(self) -> str:
        """What the charts' buckets are, for the picker's caption (traffic is counted in UTC hours at least)."""
        if self.step < dt.timedelta(hours=1):
            return f"traffic in UTC hours, latency in {_duration(self.step)} buckets"
        return f"UTC {_duration(self.step)} buckets"


def _duration(step: dt.timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            return f"{seconds // size}-{unit}"
    return f"{seconds}-second"


RANGES = {
    "1h": (dt.timedelta(hours=1), dt.timedelta(minutes=5)),
    "24h": (dt.timedelta(hours=24), dt.timedelta(hours=1)),
    "7d": (dt.timedelta(days=7), dt.timedelta(hours=6)),
    "30d": (dt.timedelta(days=30), dt.timedelta(days=1)),
}
DEFAULT_RANGE = "24h"


def time_range(request: Request[Any]) -> TimeRange:
    """From `?range=`; raises InvalidRequest for another value."""
    name = request.query_params.get("range") or DEFAULT_RANGE
    if name not in RANGES:
        raise InvalidRequest.at("range", f"must be one of {', '.join(RANGES)}, got {name!r}")
    span, step = RANGES[name]
    now = dt.datetime.now(dt.UTC)
    # Statistics buckets are UTC hours: the range starts at the hour its first moment falls in.
    since = (now - span).replace(minute=0, second=0, microsecond=0)
    return TimeRange(name, since, now + dt.timedelta(minutes=1), step)
