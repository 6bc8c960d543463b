"""A TensorZero-format config spread over several files, as TensorZero users keep it (`config/**/*.toml`).

It uses every `[gateway]` key TensorZero reads, `[postgres]`, `[object_storage]`, `[clickhouse]`,
`[provider_types]`, named schemas, `input_wrappers`, `experimentation`, function `evaluators` and an
`{% include %}` under `template_filesystem_access`; its models are the dummy provider and an OpenAI-compatible
provider type named as TensorZero names it (`vllm`), priced with TensorZero's list form of `cost`."""

from __future__ import annotations

import json
from pathlib import Path

GATEWAY = """
[gateway]
bind_address = "127.0.0.1:3000"
base_path = "/"
debug = true
unstable_error_json = true
unstable_disable_feedback_target_validation = false
disable_pseudonymous_usage_analytics = true
fetch_and_encode_input_files_before_inference = false
global_outbound_http_timeout_ms = 600000
template_filesystem_access.enabled = true
template_filesystem_access.base_path = "."
auth.enabled = false
auth.cache = { enabled = true, ttl_ms = 1000 }
cache = { enabled = true, backend = "auto", valkey = { ttl_s = 3600 } }
relay = {}
metrics.tensorzero_inference_latency_overhead_seconds_buckets = [0.001, 0.01, 0.1]

[gateway.observability]
enabled = true
async_writes = false
backend = "postgres"
disable_automatic_migrations = false
batch_writes = { enabled = true, flush_interval_ms = 50, max_rows = 500, max_rows_postgres = 500 }

[gateway.export.otlp.traces]
enabled = false
format = "opentelemetry"
extra_headers = { "x-team" = "llm" }

[postgres]
connection_pool_size = 10

[object_storage]
type = "disabled"

[clickhouse]
disable_automatic_migrations = true

[provider_types.openai.defaults]
api_key_location = "env::OPENAI_API_KEY"

[models.echo]
routing = ["dummy"]
skip_relay = false
[models.echo.providers.dummy]
type = "dummy"
model_name = "echo"

[models.local]
routing = ["vllm"]
[models.local.providers.vllm]
type = "vllm"
model_name = "echo"
api_base = "{openai_base}"
api_key_location = "none"
cost = [
  { pointer = "/usage/prompt_tokens", cost_per_million = 1.0, required = true },
  { pointer = "/usage/completion_tokens", cost_per_million = 2.0, required = true },
]

[metrics.liked]
type = "boolean"
optimize = "max"
level = "inference"
"""

FUNCTIONS = """
[functions.draft]
type = "chat"
system_schema = "draft/system_schema.json"

[functions.draft.variants.a]
type = "chat_completion"
model = "echo"
system_template = "draft/system.minijinja"

[functions.wrapped]
type = "chat"

[functions.wrapped.variants.a]
type = "chat_completion"
model = "echo"
input_wrappers.user = "wrapped/user_wrapper.minijinja"

[functions.facts]
type = "chat"
schemas.topic.path = "facts/topic_schema.json"

[functions.facts.variants.a]
type = "chat_completion"
model = "echo"
templates.topic.path = "facts/topic.minijinja"
max_tokens = 100

[functions.facts.variants.b]
type = "chat_completion"
model = "echo"
templates.topic.path = "facts/topic.minijinja"

[functions.facts.experimentation]
type = "static"
candidate_variants = { a = 1.0 }
fallback_variants = ["b"]

[functions.facts.evaluators.exact]
type = "exact_match"

[functions.local_chat]
type = "chat"

[functions.local_chat.variants.a]
type = "chat_completion"
model = "local"
"""


def write_tensorzero_config(folder: Path, openai_base: str = "http://127.0.0.1:9/v1/") -> str:
    """Write the files under `folder/config` (the `vllm` provider at `openai_base`); returns the glob that names
    them all."""
    config = folder / "config"
    functions = config / "functions"
    for sub in ("draft", "wrapped", "facts"):
        (functions / sub).mkdir(parents=True, exist_ok=True)
    (config / "partials").mkdir(parents=True, exist_ok=True)
    (config / "tensorzero.toml").write_text(GATEWAY.replace("{openai_base}", openai_base))
    (functions / "tensorzero.functions.toml").write_text(FUNCTIONS)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    (functions / "draft" / "system_schema.json").write_text(json.dumps(schema))
    (functions / "draft" / "system.minijinja").write_text("{% include 'partials/persona.minijinja' %} I am {{ name }}.")
    (config / "partials" / "persona.minijinja").write_text("You are helpful.")
    (functions / "wrapped" / "user_wrapper.minijinja").write_text("<q>{{ user_text }}</q>")
    topic = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    (functions / "facts" / "topic_schema.json").write_text(json.dumps(topic))
    (functions / "facts" / "topic.minijinja").write_text("Tell me about {{ topic }}")
    return str(config / "**" / "*.toml")
