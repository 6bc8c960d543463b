"""The API keys page: every key (never a secret), create (the key shown once), disable; rate-limit bucket levels.

Creating and disabling keys writes api_keys, which the least-privilege daemon role of sql/roles.sql may not do:
there the page says so and `lsd keys` (as the owner) remains the way."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console import access
from lsd.api.console.access import Viewer
from lsd.api.console.page import read_form, redirect, services
from lsd.api.console.render import render
from lsd.auth import PREFIX, new_key
from lsd.errors import Forbidden, InvalidRequest, NotFound
from lsd.store import console, keys

MAX_KEYS = 500
NO_PRIVILEGE = "the daemon's database role may not write api_keys (sql/roles.sql): use `lsd keys` as the owner"


async def key_list(request: Request[Any], viewer: Viewer, *, created: str | None = None) -> Response:
    database = services(request).database
    return render(
        request,
        "keys.html",
        viewer,
        keys=await keys.list_keys_async(database, MAX_KEYS),
        buckets=await console.rate_limit_buckets(database),
        created=created,
        roles=access.ROLES,
    )


async def create(request: Request[Any], viewer: Viewer) -> Response:
    """Make a key and show it in this one response (never stored, never shown again)."""
    form = await read_form(request)
    access.check_form(viewer, form, admin=True)
    role = form.get("console_role") or None
    if role is not None and role not in access.ROLES:
        raise InvalidRequest.at("console_role", f"must be one of {', '.join(access.ROLES)} or empty")
    made = new_key()
    try:
        await keys.insert_key_async(
            services(request).database,
            made.public_id,
            made.secret_sha256,
            description=form.get("description") or None,
            console_role=role,
        )
    except keys.NoWritePrivilege:
        raise Forbidden(NO_PRIVILEGE) from None
    return await key_list(request, viewer, created=made.token)


async def disable(request: Request[Any], viewer: Viewer) -> Response:
    form = await read_form(request)
    access.check_form(viewer, form, admin=True)
    public_id = request.path_params["public_id"]
    if public_id.startswith(PREFIX):
        raise InvalidRequest.at("public_id", "give the public id, not the whole key")
    try:
        found = await keys.disable_key_async(services(request).database, public_id)
    except keys.NoWritePrivilege:
        raise Forbidden(NO_PRIVILEGE) from None
    if found is None:
        raise NotFound(f"no key with public id {public_id!r}", field="public_id")
    return redirect("/ui/keys")
