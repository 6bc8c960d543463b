"""extra_body / extra_headers edits: JSON Pointer set, append, delete, escapes; header set and delete."""

from __future__ import annotations

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
