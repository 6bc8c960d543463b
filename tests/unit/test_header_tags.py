"""`lsd-tag-<key>` request headers become tags: UTF-8 values read as UTF-8, other bytes as Latin-1."""

from __future__ import annotations

from lsd.api.auth import identify
from lsd.inference.request import parse_inference_request


def test_header_tag_values_are_read_as_utf8_else_latin1() -> None:
    parsed = parse_inference_request({"function_name": "f", "input": {"messages": []}, "tags": {"team": "body"}})
    headers = [
        (b"lsd-tag-city", "Zürich ☕".encode()),
        (b"lsd-tag-legacy", b"caf\xe9"),  # Latin-1, not UTF-8
        (b"lsd-tag-team", b"header"),  # the body's tag wins
    ]
    tagged = identify({"headers": headers}, parsed)
    assert tagged.tags == {"city": "Zürich ☕", "legacy": "café", "team": "body"}
