"""The `anthropic` provider type: Anthropic's Messages API (`POST {api_base}messages`), streaming or not.

Options:
  model_name          required; the model as Anthropic knows it
  api_base            default "https://api.anthropic.com/v1/"
  api_key_location    default "env::ANTHROPIC_API_KEY"; "dynamic::NAME" or "none" (no x-api-key header)
  max_tokens          default 4096, sent when a request sets none (Anthropic requires max_tokens)
  cost                optional inline table { input_per_million, output_per_million, cache_read_per_million?,
                      cache_write_per_million? } (USD per million tokens), or TensorZero's list of pointers
  batch_cost          optional, the same shape: the Message Batches price (default: `cost` at half price)

Modules: `wire` maps requests and message objects (pure; its docstring states the mapping choices), `stream`
turns SSE events into deltas (pure), `batch` speaks Message Batches, `provider` configures the HTTP shell
(lsd.providers.http).
"""

from lsd.providers.anthropic.provider import AnthropicProvider
from lsd.providers.anthropic.stream import StreamState
from lsd.providers.anthropic.wire import build_body, build_messages, finish_reason, parse_response, parse_usage

__all__ = [
    "AnthropicProvider",
    "StreamState",
    "build_body",
    "build_messages",
    "finish_reason",
    "parse_response",
    "parse_usage",
]
