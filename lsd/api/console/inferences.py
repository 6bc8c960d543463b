"""The inference pages: the filtered list (keyset paging), one inference with its attempts and feedback, the
human-feedback form, and one episode.

Lists go through lsd.inference.listing, the query API's own parser and query builder: the console builds the
body POST /v1/inferences/list_inferences would get. Feedback goes through the FeedbackService, as POST /feedback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console import access
from lsd.api.console.access import Viewer
from lsd.api.console.page import read_form, redirect, services
from lsd.api.console.render import render
from lsd.errors import InvalidRequest, NotFound
from lsd.feedback import parse_feedback_request
from lsd.inference import listing
from lsd.store import console
from lsd.store.feedback import find_inference

PAGE_SIZE = 50
DEFAULT_SPAN = dt.timedelta(days=7)
FILTERS = ("function", "variant", "episode", "tag", "since", "until", "metric", "op", "value")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
FEEDBACK_KINDS = ("boolean", "float", "comment", "demonstration")


def _uuid(text: str, field: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidRequest.at(field, f"invalid UUID {text!r}") from None


def _time(text: str) -> str:
    """A datetime-local value (no zone) is UTC."""
    return text if text.endswith("Z") or "+" in text[10:] else f"{text}Z"


def list_body(params: dict[str, str], metric_types: Mapping[str, str]) -> dict[str, Any]:
    """The list_inferences body for the filter form's values."""
    body: dict[str, Any] = {"limit": PAGE_SIZE}
    if params.get("function"):
        body["function_name"] = params["function"]
    if params.get("variant"):
        body["variant_name"] = params["variant"]
    if params.get("episode"):
        body["episode_id"] = params["episode"]
    if params.get("tag"):
        key, equals, value = params["tag"].partition("=")
        if not equals or not key:
            raise InvalidRequest.at("tag", "expected key=value")
        body["tags"] = {key.strip(): value.strip()}
    since = params.get("since")
    if since:
        body["since"] = _time(since)
    elif not params.get("episode"):
        body["since"] = (dt.datetime.now(dt.UTC) - DEFAULT_SPAN).isoformat()
    if params.get("until"):
        body["until"] = _time(params["until"])
    if params.get("metric"):
        body["filters"] = _metric_filter(params, metric_types)
    if params.get("cursor"):
        body["cursor"] = params["cursor"]
    return body


def _metric_filter(params: dict[str, str], metric_types: Mapping[str, str]) -> dict[str, Any]:
    name, op, text = params["metric"], params.get("op") or "=", params.get("value", "").strip()
    boolean = metric_types.get(name) == "boolean" or (name not in metric_types and text in ("true", "false"))
    if boolean:
        if text not in ("true", "false"):
            raise InvalidRequest.at("value", f"metric {name!r} is boolean: expected true or false")
        if op not in ("=", "!="):
            raise InvalidRequest.at("op", f"metric {name!r} is boolean: compare with = or !=")
        return {"type": "boolean_metric", "metric_name": name, "value": (text == "true") == (op == "=")}
    try:
        number = float(text)
    except ValueError:
        raise InvalidRequest.at("value", f"expected a number, got {text!r}") from None
    if not math.isfinite(number):
        raise InvalidRequest.at("value", "expected a finite number")
    return {"type": "float_metric", "metric_name": name, "value": number, "comparison_operator": op}


async def inferences(request: Request[Any], viewer: Viewer) -> Response:
    rt = services(request)
    params = {k: v.strip() for k, v in request.query_params.items() if k in (*FILTERS, "cursor")}
    metric_types = {m: c.type for m, c in rt.config.metrics.items()}
    found = await listing.list_inferences(rt.database, list_body(params, metric_types), rt.config.metrics)
    kept = {k: v for k, v in params.items() if k != "cursor" and v}
    next_url = None
    if found.next_cursor and len(found.rows) == PAGE_SIZE:
        next_url = "/ui/inferences?" + urlencode({**kept, "cursor": found.next_cursor})
    return render(
        request,
        "inferences.html",
        viewer,
        rows=found.rows,
        params=params,
        next_url=next_url,
        first_url="/ui/inferences?" + urlencode(kept) if params.get("cursor") else None,
        functions=sorted(rt.config.functions),
        metrics=sorted(rt.config.metrics),
        operators=OPERATORS,
    )


async def inference(request: Request[Any], viewer: Viewer) -> Response:
    return await _inference_page(request, viewer, _uuid(request.path_params["inference_id"], "inference_id"))


async def _inference_page(
    request: Request[Any],
    viewer: Viewer,
    inference_id: UUID,
    *,
    form_error: str | None = None,
    form_values: Mapping[str, str] | None = None,
) -> Response:
    """The inference's page; with `form_error`, answering its feedback form that could not be recorded (400): the
    message above the form, and the form filled with what was typed."""
    rt = services(request)
    found = await listing.get_inferences(rt.database, {"ids": [str(inference_id)], "include_model_inferences": True})
    if not found.rows:
        failed = await console.failed_inference(rt.database, inference_id)
        if failed is None or form_error is not None:
            raise NotFound(f"unknown inference {inference_id}", field="inference_id")
        return render(request, "failed_inference.html", viewer, failed=failed)
    row = found.rows[0]
    return render(
        request,
        "inference.html",
        viewer,
        400 if form_error else 200,
        form_error=form_error,
        form_values=form_values,
        row=row,
        attempts=row.model_inferences,
        feedback=await console.feedback_for(rt.database, inference_id),
        metrics=sorted(rt.config.metrics.values(), key=lambda m: m.name),
        kinds=FEEDBACK_KINDS,
        added=_feedback_id(request.query_params.get("added")),
        added_on_episode=request.query_params.get("on") == "episode",
    )


def _feedback_id(value: str | None) -> str | None:
    """The `added` notice's feedback id, shown only when it is one (never a link's text on the console's page)."""
    try:
        return str(UUID(value)) if value else None
    except ValueError:
        return None


def feedback_body(
    form: dict[str, str], inference_id: UUID, episode_id: str, levels: Mapping[str, str]
) -> dict[str, Any]:
    """The POST /feedback body for the console's form (kind, metric_name, value)."""
    kind = form.get("kind", "")
    text = form.get("value", "")
    if kind == "comment":
        return {"metric_name": "comment", "inference_id": str(inference_id), "value": text}
    if kind == "demonstration":
        # JSON when it starts as an object (a json function's output) or an array of them (content blocks); any
        # other text is the demonstration's text, "[Draft] ..." included.
        value: Any = text
        if re.match(r"\s*(\{|\[\s*\{)", text):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest.at("value", f"malformed JSON: {exc}") from None
        return {"metric_name": "demonstration", "inference_id": str(inference_id), "value": value}
    if kind not in ("boolean", "float"):
        raise InvalidRequest.at("kind", f"must be one of {', '.join(FEEDBACK_KINDS)}")
    metric = form.get("metric_name", "")
    if kind == "boolean":
        if text not in ("true", "false"):
            raise InvalidRequest.at("value", "a boolean metric takes true or false")
        value = text == "true"
    else:
        try:
            value = float(text)
        except ValueError:
            raise InvalidRequest.at("value", f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise InvalidRequest.at("value", "expected a finite number")
    if levels.get(metric) == "episode":
        return {"metric_name": metric, "episode_id": episode_id, "value": value}
    return {"metric_name": metric, "inference_id": str(inference_id), "value": value}


async def add_feedback(request: Request[Any], viewer: Viewer) -> Response:
    """The form's POST: checked (CSRF, admin role), then submitted as POST /feedback would be."""
    rt = services(request)
    inference_id = _uuid(request.path_params["inference_id"], "inference_id")
    form = await read_form(request)
    access.check_form(viewer, form, admin=True)
    levels = {m: c.level for m, c in rt.config.metrics.items()}
    episode_id = ""
    if levels.get(form.get("metric_name", "")) == "episode":  # the inference's own episode, never the form's word
        target = rt.recent.inference(inference_id) or await find_inference(rt.database, inference_id)
        if target is None:
            raise NotFound(f"unknown inference {inference_id}", field="inference_id")
        episode_id = str(target.episode_id)
    try:
        body = feedback_body(form, inference_id, episode_id, levels)
        parsed = dataclasses.replace(parse_feedback_request(body), api_key_public_id=viewer.public_id)
        feedback_id = await rt.feedback.submit(parsed)
    except InvalidRequest as exc:  # back to the page, with what was typed
        values = {k: form.get(k, "") for k in ("kind", "metric_name", "value")}
        return await _inference_page(request, viewer, inference_id, form_error=exc.message, form_values=values)
    where = "&on=episode" if episode_id else ""  # shown on the episode's page, not this one
    return redirect(f"/ui/inferences/{inference_id}?added={feedback_id}{where}")


async def episode(request: Request[Any], viewer: Viewer) -> Response:
    rt = services(request)
    episode_id = _uuid(request.path_params["episode_id"], "episode_id")
    body = {
        "episode_id": str(episode_id),
        "limit": 200,
        "order_by": [{"by": "timestamp", "direction": "ascending"}],
    }
    found = await listing.list_inferences(rt.database, body, rt.config.metrics)
    return render(
        request,
        "episode.html",
        viewer,
        episode_id=episode_id,
        rows=found.rows,
        feedback=await console.feedback_for(rt.database, episode_id),
    )
