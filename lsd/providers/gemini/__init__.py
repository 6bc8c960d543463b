"""The `google_ai_studio_gemini` provider type: the Gemini API (generativelanguage.googleapis.com, v1beta).

Options (besides type and timeouts):
    model_name        required; "gemini-2.5-flash" becomes the resource "models/gemini-2.5-flash" (a name that
                      already holds a "/", such as "tunedModels/x", is used as the resource as-is)
    api_base          default "https://generativelanguage.googleapis.com/v1beta/"
    api_key_location  default "env::GOOGLE_AI_STUDIO_API_KEY"; sent in the `x-goog-api-key` header, never in
                      the URL's `?key=`, so it never lands in access logs or stored URLs
    cost              optional inline table {input_per_million, output_per_million} in currency per 1M tokens

Endpoints: POST {api_base}{resource}:generateContent, :streamGenerateContent?alt=sse (SSE, one
GenerateContentResponse per `data:`) and :batchEmbedContents.

Modules: `wire` maps requests and responses (pure; its docstring states the mapping choices), `stream` turns
SSE payloads into deltas (pure), `provider` configures the HTTP shell (lsd.providers.http).
"""

from lsd.providers.gemini.provider import GeminiProvider
from lsd.providers.gemini.stream import StreamState
from lsd.providers.gemini.wire import (
    build_body,
    build_contents,
    model_resource,
    parse_embeddings,
    parse_response,
    parse_usage,
    status_error,
)

__all__ = [
    "GeminiProvider",
    "StreamState",
    "build_body",
    "build_contents",
    "model_resource",
    "parse_embeddings",
    "parse_response",
    "parse_usage",
    "status_error",
]
