"""`GET /openapi.json`: an OpenAPI 3.1 description of every route, built from the small table below.

Names are those the running config defines (functions, models, embedding models, metrics), as an `enum`: a
generated request reaches a real function, and a fuzzer's negative cases try the others.

The table describes what a client may send (path parameters, query parameters, the JSON body's main keys) and the
error body every route may answer; it is not the parser (each route parses its own input, lsd.inference.request,
lsd.feedback, ...). It is enough for a client generator or a fuzzer (schemathesis, tests/robustness) to reach
every route. A test pins that every route of lsd.api.routes appears here.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lsd import __version__
from lsd.api.state import AppState
from lsd.config.model import Config

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
UUID: Schema = {"type": "string", "format": "uuid"}
SESSION_ID: Schema = {"type": "string", "minLength": 1, "maxLength": 512}  # lsd.sessions.MAX_SESSION_ID_CHARS
TAGS: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
TEXT_BLOCK: Schema = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": STRING},
    "required": ["type", "text"],
    "additionalProperties": False,
}
MESSAGE: Schema = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["user", "assistant"]},
        "content": {"oneOf": [STRING, {"type": "array", "items": TEXT_BLOCK}]},
    },
    "required": ["role", "content"],
    "additionalProperties": False,
}
INPUT: Schema = {
    "type": "object",
    "properties": {"system": STRING, "messages": {"type": "array", "items": MESSAGE, "minItems": 1}},
    "additionalProperties": False,
}
PARAMS: Schema = {
    "type": "object",
    "properties": {
        "chat_completion": {
            "type": "object",
            "properties": {
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "max_tokens": {"type": "integer", "minimum": 1},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "seed": {"type": "integer", "minimum": 0},
                "stop_sequences": {"type": "array", "items": STRING},
            },
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
INFERENCE: Schema = {
    "type": "object",
    "properties": {
        "function_name": STRING,
        "model_name": STRING,
        "variant_name": STRING,
        "episode_id": UUID,
        "input": INPUT,
        "stream": {"type": "boolean"},
        "params": PARAMS,
        "dryrun": {"type": "boolean"},
        "tags": TAGS,
    },
    "description": "The common keys (docs/api.md lists them all: output_schema, extra_body, cache_options...).",
    "required": ["function_name", "input"],
    "additionalProperties": False,
}
FEEDBACK: Schema = {
    "type": "object",
    "properties": {
        "metric_name": STRING,
        "inference_id": UUID,
        "episode_id": UUID,
        "value": {},
        "tags": TAGS,
        "dryrun": {"type": "boolean"},
    },
    "required": ["metric_name", "value"],
    "additionalProperties": False,
}
LIST_INFERENCES: Schema = {
    "type": "object",
    "properties": {
        "function_name": STRING,
        "variant_name": STRING,
        "episode_id": UUID,
        "model_name": STRING,
        "output_source": {"type": "string", "enum": ["inference", "demonstration"]},
        "limit": {"type": "integer", "minimum": 0, "maximum": 1000},
        "offset": {"type": "integer", "minimum": 0},
        "before": UUID,
        "after": UUID,
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "tags": TAGS,
        "filters": {"type": "object"},
        "order_by": {"type": "array", "items": {"type": "object"}},
        "include_model_inferences": {"type": "boolean"},
        "include_usage": {"type": "boolean"},
    },
    "additionalProperties": False,
}
IDS: Schema = {"type": "object", "properties": {"ids": {"type": "array", "items": UUID}}, "required": ["ids"]}
EXPORT_INFERENCES: Schema = {
    "type": "object",
    "properties": {
        "function_name": STRING,
        "variant_name": STRING,
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "with_feedback": {"type": "boolean"},
        "format": {"type": "string", "enum": ["parquet", "csv", "jsonl"]},
    },
    "additionalProperties": False,
}
CHAT_COMPLETION: Schema = {
    "type": "object",
    "properties": {
        "model": STRING,
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
                    "content": {"oneOf": [STRING, {"type": "array", "items": TEXT_BLOCK}, {"type": "null"}]},
                },
                "required": ["role"],
                "additionalProperties": False,
            },
        },
        "stream": {"type": "boolean"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "enum": [1]},
        "seed": {"type": "integer", "minimum": 0},
        "stop": {"oneOf": [STRING, {"type": "array", "items": STRING}]},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {},
        "response_format": {"type": "object"},
        "stream_options": {"type": "object"},
    },
    "required": ["model", "messages"],
    "additionalProperties": False,
}
EMBEDDINGS: Schema = {
    "type": "object",
    "properties": {
        "model": STRING,
        "input": {"oneOf": [STRING, {"type": "array", "items": STRING}]},
        "dimensions": {"type": "integer"},
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
    },
    "required": ["model", "input"],
    "additionalProperties": False,
}
RESPONSES: Schema = {
    "type": "object",
    "properties": {
        "model": STRING,
        "input": {"oneOf": [STRING, {"type": "array", "items": {"type": "object"}}]},
        "instructions": STRING,
        "stream": {"type": "boolean"},
        "store": {"type": "boolean"},
        "previous_response_id": STRING,
        "tools": {"type": "array", "items": {"type": "object"}},
        "text": {"type": "object"},
        "metadata": {"type": "object", "additionalProperties": STRING},
        "max_output_tokens": {"type": "integer", "minimum": 1},
    },
    "required": ["model", "input"],
}
ANTHROPIC_MESSAGES: Schema = {
    "type": "object",
    "properties": {
        "model": STRING,
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {"type": "array", "items": {"type": "object"}, "minItems": 1},
        "system": {"oneOf": [STRING, {"type": "array", "items": TEXT_BLOCK}]},
        "stream": {"type": "boolean"},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {"type": "object"},
        "thinking": {"type": "object"},
        "metadata": {"type": "object"},
    },
    "required": ["model", "max_tokens", "messages"],
}
ANTHROPIC_COUNT_TOKENS: Schema = {
    "type": "object",
    "properties": {"model": STRING, "messages": {"type": "array", "items": {"type": "object"}}},
    "required": ["model", "messages"],
}
ANY_OBJECT: Schema = {"type": "object"}

# (method, path, summary, JSON body schema or None, query parameters)
OPERATIONS: tuple[tuple[str, str, str, Schema | None, tuple[tuple[str, Schema], ...]], ...] = (
    ("GET", "/health", "200 while PostgreSQL answers, else 503", None, ()),
    ("GET", "/status", "version and config hash", None, ()),
    ("GET", "/metrics", "Prometheus metrics (text)", None, ()),
    ("GET", "/openapi.json", "this document", None, ()),
    ("POST", "/inference", "run an inference (TensorZero's body)", INFERENCE, ()),
    ("POST", "/feedback", "feedback on an inference or episode", FEEDBACK, ()),
    ("POST", "/batch_inference", "start a batch inference", ANY_OBJECT, ()),
    ("GET", "/batch_inference/{batch_id}", "a batch's status and results", None, ()),
    ("GET", "/batch_inference/{batch_id}/inference/{inference_id}", "one inference of a batch", None, ()),
    ("POST", "/v1/inferences/list_inferences", "stored inferences, filtered and paged", LIST_INFERENCES, ()),
    ("POST", "/v1/inferences/get_inferences", "stored inferences by id", IDS, ()),
    (
        "POST",
        "/v1/inferences/export",
        "stored inferences streamed as Parquet, CSV or JSON Lines",
        EXPORT_INFERENCES,
        (),
    ),
    (
        "GET",
        "/v1/sessions",
        "agent sessions' totals, newest first",
        None,
        (
            ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ("cursor", STRING),
            ("api_key_public_id", STRING),
            ("user", STRING),
            ("session_id", SESSION_ID),
            ("parent_session_id", SESSION_ID),
        ),
    ),
    ("GET", "/v1/sessions/{session_id}", "one agent session's totals and its subagents' sessions", None, ()),
    ("POST", "/v1/evaluations/human_feedback", "a person's judgement of an evaluation result", ANY_OBJECT, ()),
    (
        "GET",
        "/v1/evaluations/runs",
        "evaluation runs",
        None,
        (("evaluation_name", STRING), ("limit", {"type": "integer", "minimum": 1}), ("before", UUID)),
    ),
    ("GET", "/v1/evaluations/runs/{run_id}", "one evaluation run and its results", None, ()),
    ("POST", "/workflow_evaluation_run", "start a workflow evaluation run", ANY_OBJECT, ()),
    ("POST", "/workflow_evaluation_run/{run_id}/episode", "start an episode of a run", ANY_OBJECT, ()),
    ("POST", "/dynamic_evaluation_run", "start a workflow evaluation run (older name)", ANY_OBJECT, ()),
    ("POST", "/dynamic_evaluation_run/{run_id}/episode", "start an episode of a run (older name)", ANY_OBJECT, ()),
    ("GET", "/v1/workflow_evaluations/runs/{run_id}", "one workflow evaluation run", None, ()),
    ("GET", "/v1/functions/{function_name}/experiment", "a function's experiment: weights and evidence", None, ()),
    ("POST", "/v1/datasets/get_datapoints", "datapoints by id", IDS, ()),
    ("DELETE", "/v1/datasets/{dataset_name}", "delete a dataset", None, ()),
    ("POST", "/v1/datasets/{dataset_name}/datapoints", "create datapoints", ANY_OBJECT, ()),
    ("PATCH", "/v1/datasets/{dataset_name}/datapoints", "update datapoints", ANY_OBJECT, ()),
    ("DELETE", "/v1/datasets/{dataset_name}/datapoints", "delete datapoints", IDS, ()),
    ("PATCH", "/v1/datasets/{dataset_name}/datapoints/metadata", "rename datapoints", ANY_OBJECT, ()),
    ("POST", "/v1/datasets/{dataset_name}/list_datapoints", "a dataset's datapoints, paged", ANY_OBJECT, ()),
    ("POST", "/v1/datasets/{dataset_name}/get_datapoints", "a dataset's datapoints by id", IDS, ()),
    ("POST", "/v1/datasets/{dataset_name}/from_inferences", "datapoints from stored inferences", ANY_OBJECT, ()),
    ("POST", "/openai/v1/chat/completions", "OpenAI-compatible chat completion", CHAT_COMPLETION, ()),
    ("POST", "/openai/v1/embeddings", "OpenAI-compatible embeddings", EMBEDDINGS, ()),
    ("POST", "/openai/v1/responses", "OpenAI's Responses API (streamed too)", RESPONSES, ()),
    ("GET", "/openai/v1/models", "the functions and models, OpenAI's list shape", None, ()),
    ("GET", "/openai/v1/models/{model}", "one of them by its id (models.retrieve)", None, ()),
    ("POST", "/anthropic/v1/messages", "Anthropic's Messages API (streamed too)", ANTHROPIC_MESSAGES, ()),
    (
        "POST",
        "/anthropic/v1/messages/count_tokens",
        "Anthropic's token count, passed through",
        ANTHROPIC_COUNT_TOKENS,
        (),
    ),
    ("GET", "/anthropic/v1/models", "the model names the Messages API takes, Anthropic's page shape", None, ()),
    ("GET", "/anthropic/v1/models/{model}", "one of them by its id (models.retrieve)", None, ()),
    (
        "GET",
        "/gemini/{version}/models",
        "the model names the Gemini route takes, Google's page shape",
        None,
        (("pageSize", {"type": "integer", "minimum": 1, "maximum": 1000}), ("pageToken", STRING)),
    ),
    ("GET", "/gemini/{version}/models/{model}", "one of them by its name (models.get)", None, ()),
    (
        "POST",
        "/gemini/{version}/models/{call}",
        "Gemini's API: `{call}` is MODEL:METHOD, METHOD one of generateContent, streamGenerateContent (with "
        "alt=sse), countTokens, embedContent, batchEmbedContents",
        ANY_OBJECT,
        (("alt", STRING),),
    ),
    (
        "POST",
        "/gemini/{version}/publishers/google/models/{call}",
        "the same under Vertex AI's path (express mode: an API key)",
        ANY_OBJECT,
        (("alt", STRING),),
    ),
    (
        "POST",
        "/gemini/{version}/projects/{project}/locations/{location}/publishers/google/models/{call}",
        "the same under Vertex AI's path with a project (the project and location are not used)",
        ANY_OBJECT,
        (("alt", STRING),),
    ),
)

PATH_PARAMETERS: dict[str, Schema] = {
    "batch_id": UUID,
    "inference_id": UUID,
    "run_id": UUID,
    "dataset_name": STRING,
    "function_name": STRING,
    "model": STRING,
    "session_id": SESSION_ID,
    "version": STRING,
    "call": STRING,
    "project": STRING,
    "location": STRING,
}

ERROR: Schema = {
    "type": "object",
    "description": "An error (under /openai/: nested in `error`, OpenAI's shape; under /anthropic/: Anthropic's, "
    "`{type: error, error: {type, message}}`; under /gemini/: Google's, `{error: {code, message, status}}`). "
    "A 500 carries `error_id`, the id logged with its traceback.",
    "properties": {
        "error": {},
        "error_code": STRING,
        "field": STRING,
        "error_id": STRING,
    },
    "required": ["error"],
}


def _operation(
    method: str, path: str, summary: str, body: Schema | None, query: tuple[tuple[str, Schema], ...]
) -> Schema:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    parameters = [{"name": n, "in": "path", "required": True, "schema": PATH_PARAMETERS[n]} for n in names]
    parameters += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in query]
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: Schema = {
        "operationId": f"{method.lower()} {path}",
        "summary": summary,
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": {}}}},
            "4XX": {"description": "a request LSD refuses (never a row written)", **error},
            "5XX": {"description": "an upstream or server failure", **error},
        },
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def document() -> Schema:
    """The OpenAPI document."""
    paths: dict[str, Schema] = {}
    for method, path, summary, body, query in OPERATIONS:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, summary, body, query)
    return {
        "openapi": "3.1.0",
        "info": {"title": "LSD", "version": __version__, "description": "An LLM gateway (docs/api.md)."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


def named(names: list[str]) -> Schema:
    """One of `names` (what the config defines: any other is a 404)."""
    return {"type": "string", "enum": names} if names else STRING


def with_names(schema: Any, names: dict[str, Schema]) -> Any:
    """`schema` with each property named in `names` (function_name, model...) described by its schema there."""
    if isinstance(schema, dict):
        out = {k: with_names(v, names) for k, v in schema.items()}
        props = out.get("properties")
        if isinstance(props, dict):
            out["properties"] = {k: names.get(k, v) if v == STRING else v for k, v in props.items()}
        return out
    if isinstance(schema, list):
        return [with_names(v, names) for v in schema]
    return schema


def config_names(config: Config) -> dict[str, Schema]:
    models = sorted(config.models)
    functions = sorted(config.functions)
    embeddings = sorted(config.embedding_models)
    chat_models = [f"tensorzero::function_name::{f}" for f in functions] + [
        f"tensorzero::model_name::{m}" for m in models
    ]
    return {
        "function_name": named(functions),
        "model_name": named(models),
        "metric_name": named(sorted(config.metrics)),
        "model": named(chat_models + embeddings),
    }


async def openapi_json(request: Request[AppState]) -> Response:
    config = request.state["services"].config
    return Response(orjson.dumps(with_names(document(), config_names(config))), media_type="application/json")
