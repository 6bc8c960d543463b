"""The provider interface: every provider type implements `Provider` and registers in lsd.providers.registry."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import field, replace
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import InvalidRequest, ProviderError
from lsd.immutable import immutable
from lsd.providers.transport import Transport
from lsd.types import (
    BodyPatch,
    EmbeddingResponse,
    File,
    FinishReason,
    HeaderPatch,
    Message,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    ToolCall,
)


@immutable
class CallContext:
    """What a provider call needs besides the request: the shared transport and per-request credentials."""

    transport: Transport
    credentials: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    # Already narrowed to this call's variant, model and provider.
    extra_body: tuple[BodyPatch, ...] = ()
    extra_headers: tuple[HeaderPatch, ...] = ()


@immutable
class KeyLocation:
    """Where a provider's API key comes from: `env::VAR`, `dynamic::NAME` (request credentials) or `none`; or
    TensorZero's `{default = ..., fallback = ...}`: the default, and the fallback when the default has no key (its
    variable unset, its credential missing from the request)."""

    kind: str  # env | dynamic | none
    name: str = ""
    # An unset variable sends no key instead of failing the attempt: the default of a type whose servers often
    # run without one (vllm's `env::VLLM_API_KEY`).
    optional: bool = False
    fallback: KeyLocation | None = None

    @staticmethod
    def parse(table: Table, key: str, default: str) -> KeyLocation:
        raw = table.raw(key, default)  # resolved per call, so keys never sit in config
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - {"default", "fallback"})
            if unknown or not {"default", "fallback"} <= set(raw):
                table.error(key, "expected a string, or a table with exactly `default` and `fallback`")
                return KeyLocation("none")
            first = KeyLocation._one(table, f"{key}.default", raw["default"])
            return replace(first, fallback=KeyLocation._one(table, f"{key}.fallback", raw["fallback"]))
        return KeyLocation._one(table, key, raw)

    @staticmethod
    def _one(table: Table, key: str, raw: Any) -> KeyLocation:
        if raw == "none":
            return KeyLocation("none")
        for kind in ("env", "dynamic"):
            if isinstance(raw, str) and raw.startswith(f"{kind}::") and len(raw) > len(kind) + 2:
                return KeyLocation(kind, raw[len(kind) + 2 :])
        table.error(key, f"expected 'env::VAR', 'dynamic::NAME' or 'none', got {raw!r}")
        return KeyLocation("none")

    def resolve(self, credentials: Mapping[str, str], provider: str = "") -> str | None:
        """The key for this call. A missing dynamic credential is the caller's error (400); a missing
        environment variable fails the attempt (not retryable), so routing falls back to the next provider.
        With a fallback, either goes to the fallback instead."""
        if self.fallback is None:
            return self._own(credentials, provider)
        try:
            return self._own(credentials, provider)
        except (ProviderError, InvalidRequest):
            return self.fallback.resolve(credentials, provider)

    def _own(self, credentials: Mapping[str, str], provider: str) -> str | None:
        if self.kind == "env":
            if self.name not in os.environ:
                if self.optional:
                    return None
                raise ProviderError(
                    f"environment variable {self.name} is not set",
                    provider=provider,
                    retryable=False,
                    kind="auth",
                )
            return os.environ[self.name]
        if self.kind == "dynamic":
            if self.name not in credentials:
                raise InvalidRequest(f"missing credential {self.name!r} in `credentials`", field="credentials")
            return credentials[self.name]
        return None


BatchStatus = Literal["pending", "completed", "failed"]


@immutable
class BatchSubmission:
    """A provider batch just started. `data` is what `poll_batch` needs later (stored with the batch, so any
    process can poll it); `item_requests` holds each item's request body as sent, by custom id."""

    provider_batch_id: str
    provider_status: str
    raw_request: str
    raw_response: str
    data: Mapping[str, Any] = field(default_factory=dict)
    item_requests: Mapping[str, str] = field(default_factory=dict)


@immutable
class BatchItemResult:
    """One item of a finished batch: a response, or the error the provider reported for it."""

    custom_id: str
    response: ProviderResponse | None = None
    error: ProviderError | None = None


@immutable
class BatchPoll:
    """A provider batch's state. `results` is filled once it ended (completed, or failed with partial results)."""

    status: BatchStatus
    provider_status: str
    raw_response: str
    results: tuple[BatchItemResult, ...] = ()
    errors: tuple[str, ...] = ()


REDACTED = "[REDACTED]"
LSD_KEY_PREFIX = "sk-lsd-"  # an LSD API key (lsd.auth) is redacted wherever it appears in a header value
# A header (or URL query parameter) whose name holds one of these words carries a credential, whichever provider
# sends it: a provider that forgets to declare its key header still never stores the key.
CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "cookie", "signature")
# A key shorter than this is not searched for in stored text: replacing a short string (a test's "x") could
# rewrite ordinary content, and a real provider key is far longer.
MIN_SCRUBBED_KEY_LENGTH = 8


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter named `name` carries a credential, by the generic rule."""
    lower = name.lower()
    return any(word in lower for word in CREDENTIAL_WORDS)


def is_secret_header(name: str, value: str | None) -> bool:
    """The generic rule, for headers of any origin: a credential-like name, or a value carrying an LSD key.
    A provider's own headers are also checked against its `credential_headers` (see `redact_headers`)."""
    return is_secret_name(name) or (value is not None and LSD_KEY_PREFIX in value)


def redact_headers(
    headers: Mapping[str, str], credential_headers: frozenset[str] = frozenset(), *, key: str | None = None
) -> dict[str, str]:
    """Headers as stored in rows: [REDACTED] for the provider's declared `credential_headers` (any case), for
    every header the generic rule flags, and for any header whose value holds the call's `key`."""
    declared = {name.lower() for name in credential_headers}
    return {
        name: REDACTED if name.lower() in declared or is_secret_header(name, value) or _holds_key(value, key) else value
        for name, value in headers.items()
    }


def redact_text(text: str, key: str | None) -> str:
    """`text` (a raw request as stored) with every occurrence of `key` replaced by [REDACTED]."""
    return text.replace(key, REDACTED) if key is not None and _holds_key(text, key) else text


def redact_url(url: str) -> str:
    """`url` with the value of every credential-named query parameter (`?key=`, `access_token=`) replaced."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(is_secret_name(name) for name, _ in pairs):
        return url
    query = urlencode([(name, REDACTED if is_secret_name(name) else value) for name, value in pairs], safe="[]")
    return urlunsplit(parts._replace(query=query))


def _holds_key(text: str, key: str | None) -> bool:
    return key is not None and len(key) >= MIN_SCRUBBED_KEY_LENGTH and key in text


_STATUS_KINDS = {
    400: "bad_request",
    401: "auth",
    403: "auth",
    404: "not_found",
    408: "timeout",
    413: "bad_request",
    422: "bad_request",
    429: "rate_limited",
}


def error_from_status(
    provider: str, status: int, body: bytes | str, *, raw_request: str | None = None
) -> ProviderError:
    """A provider's non-2xx answer as a ProviderError: 408/429/5xx are retryable, other 4xx are not."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    kind = _STATUS_KINDS.get(status, "server_error" if status >= 500 else "bad_request")
    retryable = status in (408, 429) or status >= 500
    error = ProviderError(
        f"provider {provider!r} answered HTTP {status}: {text[:500]}",
        provider=provider,
        status=status,
        retryable=retryable,
        kind=kind,
        raw_request=raw_request,
        raw_response=text,
    )
    error.provider_message = _error_message(text)
    return error


def _error_message(body: str) -> str | None:
    """The message of an error body in OpenAI's or Anthropic's shape (`{"error": {"message"}}`) or Bedrock's and
    Google's (`{"message"}`, `{"error": {"message"}}`); None for any other body."""
    data = json_object(body)
    if data is None:
        return None
    error = data.get("error")
    message = error.get("message") if isinstance(error, dict) else data.get("message") or data.get("Message")
    return message if isinstance(message, str) and message else None


MAX_RETRY_AFTER_S = 86_400.0  # a day: a longer (or not finite) wait a provider asks for is passed on as this


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """An answer's `retry-after-ms` or `retry-after` (seconds, or an HTTP date) as seconds from 0 to a day; None
    without one, or with one that is not a number or a date."""
    value = headers.get("retry-after-ms")
    if value is not None:
        with contextlib.suppress(ValueError):
            return _bounded(float(value) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return _bounded(float(value))
    except ValueError:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            when = email.utils.parsedate_to_datetime(value)
            return _bounded(when.timestamp() - time.time())
    return None


def _bounded(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def malformed(
    message: str, *, provider: str = "", raw_request: str | None = None, raw_response: str | None = None
) -> ProviderError:
    """An answer whose shape is wrong (retryable: another attempt may get a well-formed one)."""
    return ProviderError(
        f"malformed response: {message}",
        provider=provider,
        retryable=True,
        kind="malformed",
        raw_request=raw_request,
        raw_response=raw_response,
    )


def has_file_urls(request: ProviderRequest) -> bool:
    """Whether a message holds a file given by URL (not inline data, nor a data: URL): what a provider that takes
    files inline only refuses, as its own failure (`Provider.unsupported`), so that routing can fall back."""
    return any(
        type(block) is File and block.data is None and not (block.url or "").startswith("data:")
        for message in request.messages
        for block in message.content
    )


def json_object(data: bytes | str) -> dict[str, Any] | None:
    """`data` decoded, when it is a JSON object; None for anything else (invalid JSON included)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def alternating_turns(
    messages: Sequence[Message],
    place: Callable[[Any, str], tuple[str, dict[str, Any]] | None],
    is_tool_result: Callable[[dict[str, Any]], bool],
) -> list[dict[str, Any]]:
    """Messages for an API that wants user and assistant turns alternating (Anthropic, Bedrock's Converse): each
    content block placed by `place(block, role)` as (role, part) or dropped (None), consecutive parts of one role
    merged into one turn, a user turn's tool results first (in their order)."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        for block in message.content:
            placed = place(block, message.role)
            if placed is None:
                continue
            role, part = placed
            if turns and turns[-1][0] == role:
                turns[-1][1].append(part)
            else:
                turns.append((role, [part]))
    for role, parts in turns:
        if role == "user":
            parts.sort(key=lambda part: not is_tool_result(part))  # stable
    return [{"role": role, "content": parts} for role, parts in turns]


def tool_arguments(call: ToolCall) -> dict[str, Any]:
    """A tool call's JSON argument string as the object Anthropic-style APIs (Anthropic, Bedrock) take as `input`;
    an empty string is `{}`. Anything but a JSON object is the request's error."""
    try:
        value = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not JSON", field="messages") from exc
    if not isinstance(value, dict):
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not a JSON object", field="messages")
    return value


def mapped_reason(reasons: Mapping[str, FinishReason], value: object) -> FinishReason | None:
    """A provider's finish/stop reason through its table: None when absent, "unknown" when not in it."""
    if value is None:
        return None
    return reasons.get(value, "unknown") if isinstance(value, str) else "unknown"


def key_fingerprint(key: str | None) -> str | None:
    """SHA-256 of a provider key, stored instead of the key so rows can tell keys apart."""
    return hashlib.sha256(key.encode()).hexdigest() if key else None


class Provider(ABC):
    """One configured provider of a model. Built once from config; `infer`/`stream` are called per request.

    Implementations raise ProviderError (or ProviderTimeout) for every failure of the remote side, with
    `retryable` telling routing whether another attempt may help.
    """

    type_name: ClassVar[str]
    # The request headers that carry this provider type's credentials, stored [REDACTED] (any case). The
    # generic rule (`is_secret_header`) covers what a provider forgets; declare them anyway, and the
    # conformance suite checks that every header carrying the key is declared.
    credential_headers: ClassVar[frozenset[str]] = frozenset()
    supports_embeddings: ClassVar[bool] = False
    embeds_tokens: ClassVar[bool] = False  # embed_tokens is implemented: inputs as token ids
    supports_batch: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.config = config

    @classmethod
    @abstractmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> Provider:
        """Parse `options` (the provider's TOML keys besides type/timeouts); report errors on the table."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model name as the provider knows it."""

    @abstractmethod
    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse: ...

    @abstractmethod
    def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]: ...

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        """Embed each input; providers that support embeddings override this and set supports_embeddings."""
        raise self.unsupported("embeddings")

    async def embed_tokens(
        self, inputs: Sequence[tuple[int, ...]], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        """Embed inputs given as token ids; providers whose API takes them override this and set embeds_tokens."""
        raise self.unsupported("token ids as embedding input")

    async def start_batch(self, items: Sequence[tuple[str, ProviderRequest]], ctx: CallContext) -> BatchSubmission:
        """Submit `items` (custom id, request) as one provider batch; providers with a batch API override this,
        `poll_batch` and set supports_batch."""
        raise self.unsupported("batch inference")

    async def poll_batch(self, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext) -> BatchPoll:
        """The batch's state now; its results once it ended. Raises ProviderError when the provider cannot be asked."""
        raise self.unsupported("batch inference")

    def unsupported(self, what: str) -> ProviderError:
        return ProviderError(
            f"provider type {self.type_name!r} does not support {what}",
            provider=self.name,
            retryable=False,
            kind="unsupported",
        )

    def error(self, message: str, *, status: int | None = None, retryable: bool = True) -> ProviderError:
        return ProviderError(message, provider=self.name, status=status, retryable=retryable)
