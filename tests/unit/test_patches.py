"""extra_body / extra_headers edits: JSON Pointer set, append, delete, escapes; header set and delete."""

from __future__ import annotations

import pytest

from lsd.errors import InvalidRequest
from lsd.inference.request import parse_header_patch
from lsd.providers.patches import apply_body_patches, apply_header_patches
from lsd.types import BodyPatch, HeaderPatch


def test_body_patches() -> None:
    body = {"a": {"b": 1}, "list": [1, 2], "gone": True}
    out = apply_body_patches(
        body,
        [
            BodyPatch("/a/b", 5),
            BodyPatch("/new/deep", "x"),
            BodyPatch("/list/-", 3),
            BodyPatch("/list/0", 0),
            BodyPatch("/gone", delete=True),
            BodyPatch("/missing/path", delete=True),
            BodyPatch("/we~1ird~0key", 1),
        ],
    )
    assert out == {"a": {"b": 5}, "new": {"deep": "x"}, "list": [0, 2, 3], "we/ird~key": 1}
    assert body == {"a": {"b": 1}, "list": [1, 2], "gone": True}  # the original is untouched


def test_header_patches_are_case_insensitive() -> None:
    headers = {"Content-Type": "application/json", "X-Old": "1"}
    out = apply_header_patches(
        headers,
        [HeaderPatch("content-type", "text/plain"), HeaderPatch("x-old", delete=True), HeaderPatch("X-New", "v")],
    )
    assert out == {"Content-Type": "text/plain", "X-New": "v"}


def test_a_request_cannot_set_where_its_provider_call_goes() -> None:
    """A request's extra_headers may not name Host (a vhost on a shared origin or proxy: the config's to choose)."""
    for name in ("Host", "host"):
        with pytest.raises(InvalidRequest) as refused:
            parse_header_patch({"name": name, "value": "169.254.169.254"}, "extra_headers[0]")
        assert refused.value.field == "extra_headers[0].name"
    assert parse_header_patch({"name": "X-Hosted-By", "value": "v"}, "extra_headers[0]").name == "X-Hosted-By"
