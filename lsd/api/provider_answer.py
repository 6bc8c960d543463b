"""A provider's answer a client acts on, passed on instead of the gateway's 502 when every attempt failed.

Claude clients compact the conversation on 400 "prompt is too long" and back off on 429 and 529 as Retry-After
says; OpenAI clients (Codex, the Agents SDK) read a 400's `code` (`context_length_exceeded`) and a 429 as a rate
limit. The routes that pass such answers on (the Anthropic route, the Responses API) turn the error into a
ProviderAnswer here and write it in their wire's shape; a provider's 401, 403, 404 or 5xx is the gateway's problem
(its key, its config), not the client's, and stays a 502.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from lsd.errors import AllAttemptsFailed, AttemptFailure, LsdError, ProviderError, RateLimited

PASSED_ON_STATUSES = frozenset({400, 413, 429, 529})
# How providers word a prompt over the model's context window (OpenAI, vLLM, Mistral, Gemini, Bedrock, Anthropic).
_OVERFLOW = re.compile(
    r"prompt is too long|context[ _](length|window)|maximum context|input token count .*exceeds|input is too long",
    re.IGNORECASE,
)


class ProviderAnswer(LsdError):
    """The last provider's answer (a status of PASSED_ON_STATUSES) when every attempt failed: its status, its own
    message, its Retry-After and its error body (`raw_response`, when the attempt kept it)."""

    error_code = "provider_error"

    def __init__(self, status: int, message: str, retry_after_s: float | None, raw_response: str | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.retry_after_s = retry_after_s
        self.raw_response = raw_response

    @property
    def context_overflow(self) -> bool:
        """Whether the answer says the prompt is over the model's context window (OpenAI's `context_length_exceeded`
        code, or the wording of the others): each client API has its own sign for it, which the routes give."""
        if self.http_status not in (400, 413):
            return False
        return self.provider_error().get("code") == "context_length_exceeded" or bool(_OVERFLOW.search(self.message))

    def provider_error(self) -> dict[str, Any]:
        """The `error` object of the provider's body (OpenAI's and Anthropic's shape), or {}."""
        try:
            body = orjson.loads(self.raw_response or "")
        except orjson.JSONDecodeError:
            return {}
        error = body.get("error") if isinstance(body, dict) else None
        return error if isinstance(error, dict) else {}


def passed_on(exc: LsdError) -> LsdError:
    """`exc` as a passing-on route answers it: an inference whose last failed attempt (or a call that) got a status
    of PASSED_ON_STATUSES answers that status, with the provider's message, Retry-After and body; anything else as
    is."""
    answered: AttemptFailure | ProviderError | None = None  # the provider's answer: the last attempt's, or the call's
    if isinstance(exc, AllAttemptsFailed) and exc.failures:
        answered = exc.failures[-1]
    elif isinstance(exc, ProviderError):
        answered = exc
    # Google answers a bad key 400 (kind auth): the gateway's problem all the same, not passed on.
    if answered is None or answered.status not in PASSED_ON_STATUSES or answered.kind == "auth":
        return exc
    assert answered.status is not None
    message = answered.provider_message or answered.message
    return ProviderAnswer(answered.status, message, answered.retry_after_s, answered.raw_response)


def retry_after_s(exc: LsdError) -> float | None:
    """When the client may try again, as the gateway's rate limit or the last provider (a 429, a 503) said."""
    if isinstance(exc, RateLimited):
        return float(exc.retry_after_s)
    wait = exc.retry_after_s if isinstance(exc, ProviderAnswer) else None
    if isinstance(exc, AllAttemptsFailed) and exc.failures:
        wait = exc.failures[-1].retry_after_s
    return wait
