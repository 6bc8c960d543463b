"""Signing in to the console with an LSD key, and out (only with `[gateway.auth] enabled = true`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console import access
from lsd.api.console.page import error_page, read_form, redirect, services
from lsd.api.console.render import render
from lsd.errors import Forbidden, LsdError

HOME = "/ui/"


def _next(value: str | None) -> str:
    """Where to go after signing in: a console path only (never another site, nor `/ui/../..` out of it: a
    browser resolves dot segments, `%2e%2e` among them)."""
    if not value or "\\" in value or not (value == "/ui" or value.startswith(("/ui/", "/ui?"))):
        return HOME
    segments = unquote(value.split("?", 1)[0]).split("/")
    return HOME if ".." in segments or "." in segments else value


async def login_form(request: Request[Any]) -> Response:
    if not services(request).config.gateway.ui.enabled:
        raise HTTPException(404)
    if not services(request).auth.enabled:
        return redirect(HOME)
    viewer = access.anonymous(request)
    return render(request, "login.html", viewer, next=_next(request.query_params.get("next")), message=None)


async def login(request: Request[Any]) -> Response:
    if not services(request).config.gateway.ui.enabled:
        raise HTTPException(404)
    viewer = access.anonymous(request)
    form = await read_form(request)
    target = _next(form.get("next"))
    try:
        access.check_form(viewer, form)
        if not services(request).auth.enabled:
            return redirect(HOME)
        token = await access.sign_in(request, form.get("key", ""))
    except Forbidden as exc:
        return render(request, "login.html", viewer, 401, next=target, message=exc.message)
    except LsdError as exc:  # the database down, an expired form: the console's page saying so, not JSON
        return error_page(request, viewer, exc)
    response = redirect(target)
    access.set_session_cookie(request, response, token)
    return response


async def logout(request: Request[Any]) -> Response:
    if not services(request).config.gateway.ui.enabled:
        raise HTTPException(404)
    viewer = await access.viewer(request)
    form = await read_form(request)
    if viewer is not None:
        try:
            access.check_form(viewer, form)
        except LsdError as exc:  # an old tab's expired form: the console's page saying so, not JSON
            return error_page(request, viewer, exc)
    response = redirect("/ui/login" if services(request).auth.enabled else HOME)
    await access.sign_out(request, response)
    return response
