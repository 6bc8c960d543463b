"""`extra_body` and `extra_headers`: edits applied to a provider request just before it is sent."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from lsd.errors import InvalidRequest
from lsd.types import BodyPatch, HeaderPatch

_DELETE: Any = object()


def _tokens(pointer: str) -> list[str]:
    """RFC 6901: "/a/b~1c" -> ["a", "b/c"]; "" is the whole document (not allowed here)."""
    if not pointer.startswith("/"):
        raise InvalidRequest(f"extra_body: pointer {pointer!r} must start with '/'", field="extra_body")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _is_index(token: str) -> bool:
    """An array index: ASCII digits only (str.isdigit() also accepts "²", which int() refuses)."""
    return token.isascii() and token.isdigit()


def apply_body_patches(body: Mapping[str, Any], patches: Sequence[BodyPatch]) -> dict[str, Any]:
    """A copy of `body` with each patch applied in order: set (creating objects on the way), append with a final
    "-", or delete (a missing path is ignored)."""
    result: dict[str, Any] = copy.deepcopy(dict(body))
    for patch in patches:
        tokens = _tokens(patch.pointer)
        node: Any = result
        for token in tokens[:-1]:
            if isinstance(node, list):
                node = node[int(token)] if _is_index(token) and int(token) < len(node) else None
            elif isinstance(node, dict):
                if token not in node and not patch.delete:
                    node[token] = {}
                node = node.get(token)
            if node is None:
                break
        last = tokens[-1]
        if node is None:
            continue
        if isinstance(node, list):
            if patch.delete:
                if _is_index(last) and int(last) < len(node):
                    del node[int(last)]
            elif last == "-":
                node.append(patch.value)
            elif _is_index(last) and int(last) < len(node):
                node[int(last)] = patch.value
        elif isinstance(node, dict):
            if patch.delete:
                node.pop(last, None)
            else:
                node[last] = patch.value
    return result


def apply_header_patches(headers: Mapping[str, str], patches: Sequence[HeaderPatch]) -> dict[str, str]:
    result = dict(headers)
    for patch in patches:
        existing = next((k for k in result if k.lower() == patch.name.lower()), patch.name)
        if patch.delete:
            result.pop(existing, None)
        else:
            result[existing] = patch.value or ""
    return result
