"""embedContent and batchEmbedContents bodies on the Gemini route: each request's text and the output dimensions
(the handler: lsd.api.gemini)."""

from __future__ import annotations

from typing import Any

from lsd.api.gemini_fields import camel
from lsd.api.inbound import is_int
from lsd.errors import InvalidRequest

# An EmbedContentRequest's fields; `taskType` and `title` are taken and not used (LSD's embedding models take text).
_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})


def parse_embed_request(body: Any, model: str, batch: bool) -> tuple[tuple[str, ...], int | None]:
    """The texts to embed and their outputDimensionality (the same for every request of a batch); 400s name the
    field. A batch's `requests[i].model`, when given, must be the URL's `model`."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    if not batch:
        text, dimensions = _embedding_text(body, "")
        return (text,), dimensions
    unknown = set(camel(body)) - {"requests"}
    if unknown:
        raise InvalidRequest.at(sorted(unknown)[0], "unknown field")
    requests = camel(body).get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest.at("requests", "required: a non-empty array")
    items = []
    for i, item in enumerate(requests):
        path = f"requests[{i}]"
        named = camel(item).get("model") if isinstance(item, dict) else None
        if named is not None and (not isinstance(named, str) or named.removeprefix("models/") != model):
            raise InvalidRequest.at(f"{path}.model", f"must be the URL's model, models/{model}")
        items.append(_embedding_text(item, path))
    sizes = {d for _, d in items}
    if len(sizes) > 1:
        raise InvalidRequest.at("requests", "every request needs the same outputDimensionality")
    return tuple(text for text, _ in items), sizes.pop()


def _embedding_text(request: Any, path: str) -> tuple[str, int | None]:
    """An EmbedContentRequest's text (its parts' texts joined) and outputDimensionality."""
    if not isinstance(request, dict):
        raise InvalidRequest.at(path, "expected an object")
    request = camel(request)
    prefix = f"{path}." if path else ""  # a batch's `requests[i].`, nothing for embedContent's own body
    unknown = set(request) - _FIELDS
    if unknown:
        raise InvalidRequest.at(f"{prefix}{sorted(unknown)[0]}", "unknown field")
    content = request.get("content")
    parts = camel(content).get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest.at(f"{prefix}content.parts", "required: a non-empty array of text parts")
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise InvalidRequest.at(f"{prefix}content.parts[{i}].text", "required: a string")
        texts.append(part["text"])
    dimensions = request.get("outputDimensionality")
    if dimensions is not None and (not is_int(dimensions) or dimensions < 1):
        raise InvalidRequest.at(f"{prefix}outputDimensionality", "expected a positive integer")
    text = "\n".join(texts)
    if not text:
        raise InvalidRequest.at(f"{prefix}content.parts", "the text to embed is empty")
    return text, dimensions
