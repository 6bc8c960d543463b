"""The LsdError tree: every failure the gateway reports, with its error code and HTTP status.

    LsdError                      500 internal_error
    ├── InternalError             500 internal_error      (an unexpected exception; carries the logged error_id)
    ├── InvalidRequest            400 invalid_request     (names the field)
    │   ├── InvalidOpenAIRequest  400 invalid_request     (a /openai/v1 body TensorZero would refuse)
    │   ├── SchemaValidation      400 invalid_request     (input that fails a role's JSON Schema)
    │   ├── PayloadTooLarge       413 payload_too_large
    │   └── HeadersTooLarge       431 headers_too_large
    ├── Unauthorized              401 unauthorized
    ├── Forbidden                 403 forbidden
    ├── NotFound                  404 not_found           (an inference, a run, a datapoint)
    │   ├── UnknownFunction       404 not_found
    │   ├── UnknownVariant        404 not_found
    │   ├── UnknownModel          404 not_found           (also UnknownEmbeddingModel)
    │   ├── UnknownMetric         404 not_found
    │   └── BatchNotFound         404 not_found
    ├── RateLimited               429 rate_limited        (names the rule; Retry-After)
    ├── RequestTimeout            504 request_timeout     (no response started within gateway.request_timeout_s)
    ├── ProviderError             502 provider_error      (one provider attempt failed)
    │   └── ProviderTimeout       408 provider_timeout
    ├── AllAttemptsFailed         502 all_attempts_failed (every provider and variant failed)
    ├── DatabaseUnavailable       503 database_unavailable
    └── ConfigError               500 config_error        (raised at load time; the CLI exits 1)

The API maps this tree to JSON in one place (lsd.api.errors); nothing else chooses a status code. Messages use
TensorZero's wording where its clients and tests match on it ("Unknown function: f"); the subclasses that carry
their subject (a name, an id) let lsd.api.tensorzero_wire build TensorZero's `error_json` for each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from lsd.immutable import immutable


class LsdError(Exception):
    """Base of every error LSD reports to a caller."""

    error_code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InternalError(LsdError):
    """An unexpected exception on a request path, answered as a 500: `error_id` is logged with its traceback."""

    def __init__(self, error_id: str) -> None:
        super().__init__(f"internal error (error_id {error_id})")
        self.error_id = error_id


class InvalidRequest(LsdError):
    error_code = "invalid_request"
    http_status = 400

    @classmethod
    def at(cls, path: str, message: str) -> InvalidRequest:
        """The error for the request field at `path` ("input.messages[0].role"): "<path>: <message>"."""
        return cls(f"{path}: {message}", field=path)


class InvalidOpenAIRequest(InvalidRequest):
    """A /openai/v1 request TensorZero refuses before parsing further; `detail` is its message without the prefix."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"Invalid request to OpenAI-compatible endpoint: {detail}", field=field)
        self.detail = detail


class SchemaValidation(InvalidRequest):
    """Input at `path` that fails the `role`'s JSON Schema: each failure's message, the value and the schema. The
    message holds TensorZero's "JSON Schema validation failed" text after LSD's path."""

    def __init__(self, path: str, role: str, messages: Sequence[str], data: object, schema: object) -> None:
        failed = "\n".join(messages)
        schema_text = orjson.dumps(schema).decode()
        super().__init__(
            f"{path}: does not match the {role}_schema: JSON Schema validation failed:\n{failed}"
            f"\n\nSchema:\n{schema_text}",
            field=path,
        )
        self.messages = list(messages)
        self.data = data
        self.schema = schema


class PayloadTooLarge(InvalidRequest):
    error_code = "payload_too_large"
    http_status = 413


class Unauthorized(LsdError):
    error_code = "unauthorized"
    http_status = 401


class Forbidden(LsdError):
    """Understood and refused: a console action the viewer's role does not allow, a form without its CSRF token, a
    feature this gateway keeps off (dynamic variants with auth on)."""

    error_code = "forbidden"
    http_status = 403


class NotFound(LsdError):
    error_code = "not_found"
    http_status = 404


class UnknownFunction(NotFound):
    def __init__(self, name: str, *, field: str | None = "function_name") -> None:
        super().__init__(f"Unknown function: {name}", field=field)
        self.name = name


class UnknownVariant(NotFound):
    def __init__(self, name: str, *, field: str | None = "variant_name") -> None:
        super().__init__(f"Unknown variant: {name}", field=field)
        self.name = name


class UnknownModel(NotFound):
    def __init__(self, name: str, *, field: str | None = "model_name") -> None:
        super().__init__(f"Unknown model: {name}", field=field)
        self.name = name


class UnknownEmbeddingModel(NotFound):
    def __init__(self, name: str, *, field: str | None = "model") -> None:
        super().__init__(f"Model not found: {name}", field=field)
        self.name = name


class UnknownMetric(NotFound):
    def __init__(self, name: str, *, field: str | None = "metric_name") -> None:
        super().__init__(f"Unknown metric: {name}", field=field)
        self.name = name


class BatchNotFound(NotFound):
    def __init__(self, batch_id: object, *, field: str | None = "batch_id") -> None:
        super().__init__(f"Batch request not found for id: {batch_id}", field=field)
        self.batch_id = str(batch_id)


class RateLimited(LsdError):
    """A rate-limit rule refused the request: `rule` names it, `retry_after_s` says when to try again."""

    error_code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, rule: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.rule = rule
        self.retry_after_s = retry_after_s


class RequestTimeout(LsdError):
    error_code = "request_timeout"
    http_status = 504


class HeadersTooLarge(InvalidRequest):
    error_code = "headers_too_large"
    http_status = 431


class ProviderError(LsdError):
    """One provider attempt failed; `retryable` tells routing whether trying again may help."""

    error_code = "provider_error"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retryable: bool = True,
        kind: str = "provider_error",
        raw_request: str | None = None,
        raw_response: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.kind = kind
        # What crossed the wire, for the failed attempt's model_inference_data row (never holds keys).
        self.raw_request = raw_request
        self.raw_response = raw_response
        # A stream cut short: the token counts its provider had reported before it broke (a lsd.types.Usage).
        self.reported_usage: Any = None
        # An HTTP answer's `Retry-After` (seconds), and the provider's own error message from its body.
        self.retry_after_s: float | None = None
        self.provider_message: str | None = None
        self.provider_type: str | None = None  # where known (a stream's error event): for TensorZero's error_json


# The kind of a stream's ProviderError when its client went away mid-way: the provider did not fail (metrics count
# it as `cancelled`, not as an error).
CLIENT_GONE = "client_disconnected"


class ProviderTimeout(ProviderError):
    error_code = "provider_timeout"
    http_status = 408


@immutable
class AttemptFailure:
    """One failed attempt, summarised for the 502 body (never holds secrets)."""

    variant: str
    model: str
    provider: str
    kind: str
    message: str
    retryable: bool = True  # the provider's error may pass if the call is made again (ProviderError.retryable)
    status: int | None = None  # the provider's HTTP status, its Retry-After and its own message (ProviderError's)
    retry_after_s: float | None = None
    provider_message: str | None = None
    provider_type: str = ""  # the provider's type (`openai`), for TensorZero's error_json
    raw_request: str | None = None  # what crossed the wire (never keys), for TensorZero's error_json
    raw_response: str | None = None


class AllAttemptsFailed(LsdError):
    error_code = "all_attempts_failed"
    http_status = 502

    def __init__(self, failures: Sequence[AttemptFailure], *, skipped: Sequence[str] = ()) -> None:
        # TensorZero's wording: each variant's model providers, in the order they were tried. `skipped`: variants
        # never called because none of their candidates answered (best_of_n_sampling, mixture_of_n; the
        # candidates' failures are listed under the candidates' names).
        by_variant: dict[str, list[AttemptFailure]] = {}
        for f in failures:
            by_variant.setdefault(f.variant, []).append(f)
        lines = [
            "All model providers failed to infer with errors: " + ", ".join(f"{f.provider}: {f.message}" for f in tried)
            for tried in by_variant.values()
        ]
        if set(by_variant) == {""} and not skipped:  # a call with no variants (embeddings): the model's alone
            message = lines[0]
        else:
            summary = "\n".join(
                [
                    *(f"{variant}: {line}" for variant, line in zip(by_variant, lines, strict=True)),
                    *(f"{variant}: not called: none of its candidates answered" for variant in skipped),
                ]
            )
            message = f"All variants failed with errors: {summary}"
        super().__init__(message)
        self.failures = list(failures)
        self.inference: tuple[str, str] | None = None  # (inference id, function) once the engine knows them
        # False when every failure was one a new call would meet again (a provider's 400, 401, 403, 404): the
        # answer then says `x-should-retry: false`, which the OpenAI and Anthropic SDKs obey instead of retrying.
        self.retryable = not failures or any(f.retryable for f in failures)
        # A single client-side cause (e.g. 400 from every provider) keeps its status; else 502.
        statuses = {f.kind for f in failures}
        if statuses == {"timeout"}:
            self.http_status = 408


class DatabaseUnavailable(LsdError):
    error_code = "database_unavailable"
    http_status = 503


class ConfigError(LsdError):
    """A config problem; `errors` lists every problem found, each naming its TOML key path."""

    error_code = "config_error"
    http_status = 500

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)
