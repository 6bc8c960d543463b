"""Helpers for the Responses API's unit tests: a request parsed with defaults, and the events a stream writes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import UUID

from lsd.api.responses_request import parse_responses_request
from lsd.api.responses_wire import ResponseEvents
from lsd.inference.streaming import StreamEvent

ID = UUID("01930000-0000-7000-8000-000000000001")
MODEL = "lsd::model_name::gpt"


def parse(**body: Any) -> Any:
    """A Responses API call for MODEL with input "hi", `body` added."""
    return parse_responses_request({"model": MODEL, "input": "hi", **body})


def events_of(call: Any, stream_events: list[StreamEvent]) -> list[tuple[str, dict[str, Any]]]:
    """The events a stream of `stream_events` writes for `call`, its opening events first."""
    stream = SimpleNamespace(inference_id=ID, variant_name="gpt")
    writer = ResponseEvents(call, stream)  # type: ignore[arg-type]
    out = writer.start()
    for event in stream_events:
        out.extend(writer.events(event))
    return out
