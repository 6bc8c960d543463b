"""The `openai` provider type: OpenAI Chat Completions, and any OpenAI-compatible server via `api_base`.

Options (besides type and timeouts):
    model_name        required; sent as the body's "model"
    api_base          default "https://api.openai.com/v1/"; "/chat/completions" and "/embeddings" are appended
    api_key_location  default "env::OPENAI_API_KEY"; "none" sends no Authorization header (vLLM, Ollama)
    cost              optional inline table {input_per_million, output_per_million} in currency per 1M tokens
    batch_cost        optional, the same shape: the Batch API price (default: `cost` at half price)

Modules: `wire` maps requests and completions (pure), `stream` turns SSE payloads into deltas (pure),
`batch` speaks the Batch API (files and batches), `provider` configures the HTTP shell (lsd.providers.http);
the `azure` type (lsd.providers.azure) reuses them all.

Token limit: `InferenceParams.max_tokens` is sent as "max_completion_tokens" to api.openai.com (the only name
its reasoning models accept; "max_tokens" is deprecated there) and as "max_tokens" to every other server
(vLLM, Ollama, LM Studio, Azure's GA API versions), which know only that name.
"""

from lsd.providers.openai.provider import ChatCompletionsProvider, OpenAIProvider
from lsd.providers.openai.stream import StreamState
from lsd.providers.openai.wire import build_body, parse_embeddings, parse_response

__all__ = [
    "ChatCompletionsProvider",
    "OpenAIProvider",
    "StreamState",
    "build_body",
    "parse_embeddings",
    "parse_response",
]
