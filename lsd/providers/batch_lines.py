"""One line of a provider's batch results file, parsed, and the result it becomes (openai and anthropic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.errors import ProviderError
from lsd.immutable import immutable
from lsd.providers.base import BatchItemResult
from lsd.providers.http import HttpProvider
from lsd.types import FinishReason, OutputBlock, ProviderResponse, Usage


@immutable
class ResultLine:
    """The answer's parts, or the error message (`kind` is the attempt's error kind; `status` the HTTP status
    the provider reports for the line, where it reports one)."""

    custom_id: str
    raw: str
    content: tuple[OutputBlock, ...] = ()
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    error: str | None = None
    status: int | None = None
    kind: str = "batch_item_failed"
    answer: Any = None  # the response object, as a plain call would have answered it (for the list form of cost)


def item_result(provider: HttpProvider, line: ResultLine) -> BatchItemResult:
    """A failed line becomes a non-retryable ProviderError; an answer a response costed at the batch price."""
    if line.error is not None or line.usage is None:
        error = ProviderError(
            line.error or "no answer",
            provider=provider.name,
            status=line.status,
            retryable=False,
            kind=line.kind,
            raw_response=line.raw,
        )
        return BatchItemResult(line.custom_id, error=error)
    response = ProviderResponse(
        content=line.content,
        usage=line.usage,
        finish_reason=line.finish_reason,
        raw_request="",
        raw_response=line.raw,
        cost=provider.batch_cost(line.usage, line.answer),
    )
    return BatchItemResult(line.custom_id, response=response)


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one (provider payloads are not trusted to be well formed)."""
    return value if isinstance(value, Mapping) else {}
