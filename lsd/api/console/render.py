"""Rendering a console page: the Jinja2 environment (autoescaped), its filters, and the HTML responses."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from lsd.api.console.access import Viewer

TEMPLATES_DIR = Path(__file__).parent / "templates"
DASH = "\N{EN DASH}"  # for a missing value
# Pages are never cached: they show live data and may carry a CSRF token.
NO_STORE = {"cache-control": "no-store", "x-frame-options": "DENY", "referrer-policy": "same-origin"}
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'"


def number(value: Any, digits: int = 0) -> str:
    """12,345 (or 12,345.68 with `digits`); a dash for None."""
    if value is None:
        return DASH
    return f"{value:,.{digits}f}"


def money(value: Any) -> str:
    """A cost: cents above $100, four decimals below, and a priced call under $0.0001 with its two significant
    digits ($0.000011), not as a free one."""
    if value is None:
        return DASH
    if 0 < value < 0.0001:
        decimals = min(12, 1 - math.floor(math.log10(float(value))))
        return f"${float(value):.{decimals}f}"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def short_id(value: Any) -> str:
    """An id shortened for a list: its last 12 characters (a UUIDv7 starts with its timestamp, which rows made in
    the same moment share)."""
    text = str(value)
    return text if len(text) <= 13 else f"\N{HORIZONTAL ELLIPSIS}{text[-12:]}"


def when(value: dt.datetime | None) -> str:
    return DASH if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Base64 payloads (images and files in an input, as data or data URLs) above this many characters are shown as a
# note of their size: a page holding a few photos would otherwise weigh megabytes of text no one reads.
LONG_BASE64 = 1024
_BASE64 = re.compile(r"(data:[\w.+-]+/[\w.+-]+;base64,)?[A-Za-z0-9+/_-]+=*")


def pretty(value: Any) -> str:
    """JSON as indented text (the template escapes it), long base64 payloads as a note of their size."""
    if value is None:
        return "null"
    return orjson.dumps(_short(value), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode()


# A long run, tried only where a run starts (the look-behind): each character is read about once, not once per
# start inside a run just short of the length.
_BASE64_RUN = re.compile(rf"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{{{LONG_BASE64},}}={{0,2}}")


def raw(text: str | None) -> str | None:
    """A raw request or response as stored, its long base64 runs (images, files) as a note of their size."""
    if text is None or len(text) <= LONG_BASE64:
        return text
    return _BASE64_RUN.sub(_noted, text)


def _noted(match: re.Match[str]) -> str:
    """A base64 run as a note of its size; a run of letters and digits alone (a hash, a long word) is not base64
    of a file (1 KiB of random bytes' base64 holds a `+` or `/` but for a 1 in 10^14 chance): left as it is."""
    run = match[0]
    if len(run) < LONG_BASE64 or ("+" not in run and "/" not in run):
        return run
    return f"(base64 data, {len(run) * 3 // 4 / 1024:,.0f} KiB: not shown)"


_PAYLOAD_KEYS = frozenset({"data", "url", "file_data", "image_url"})  # where a file block holds its bytes


def _short(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str):
        payload = key in _PAYLOAD_KEYS or value.startswith("data:")
        binary = "+" in value or "/" in value.partition(",")[2 if value.startswith("data:") else 0]
        if payload and len(value) > LONG_BASE64 and binary and _BASE64.fullmatch(value):
            return f"(base64 data, {len(value) * 3 // 4 / 1024:,.0f} KiB: not shown)"
        return value
    if isinstance(value, dict):
        return {k: _short(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f} %"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=number, money=money, when=when, pretty=pretty, raw=raw, percent=percent, short_id=short_id
    )
    return env


ENVIRONMENT = _environment()


def render(
    request: Request[Any], template: str, viewer: Viewer, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page `template` with `context`, the viewer (role, CSRF token) and the current path for the menu."""
    html = ENVIRONMENT.get_template(template).render(viewer=viewer, path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status_code, headers={**NO_STORE, "content-security-policy": CSP})
    viewer.set_cookies(response, secure=request.url.scheme == "https")
    return response
