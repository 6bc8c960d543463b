"""The error bodies of both wire formats, and the OpenAI-compatible `model` parsing, as TensorZero answers them."""

from __future__ import annotations

import orjson
import pytest

from lsd.api.anthropic_wire import anthropic_error_body
from lsd.api.openai_model import ModelRef, parse_model
from lsd.api.openai_request import parse_chat_request
from lsd.api.openai_wire import openai_error_body
from lsd.api.provider_answer import ProviderAnswer, passed_on
from lsd.api.tensorzero_wire import error_body, error_json, route_not_found_body
from lsd.errors import (
    AllAttemptsFailed,
    AttemptFailure,
    BatchNotFound,
    InvalidOpenAIRequest,
    InvalidRequest,
    LsdError,
    ProviderError,
    SchemaValidation,
    UnknownEmbeddingModel,
    UnknownFunction,
    UnknownMetric,
    UnknownModel,
    UnknownVariant,
)
from lsd.providers.base import MAX_RETRY_AFTER_S, retry_after_s


@pytest.mark.parametrize(
    ("exc", "message", "details"),
    [
        (UnknownFunction("f"), "Unknown function: f", {"UnknownFunction": {"name": "f"}}),
        (UnknownVariant("v"), "Unknown variant: v", {"UnknownVariant": {"name": "v"}}),
        (UnknownModel("m"), "Unknown model: m", {"UnknownModel": {"name": "m"}}),
        (UnknownMetric("q"), "Unknown metric: q", {"UnknownMetric": {"name": "q"}}),
        (UnknownEmbeddingModel("e"), "Model not found: e", {"ModelNotFound": {"model_name": "e"}}),
        (BatchNotFound("b1"), "Batch request not found for id: b1", {"BatchNotFound": {"id": "b1"}}),
        (InvalidRequest("bad"), "bad", {"InvalidRequest": {"message": "bad"}}),
        (LsdError("boom"), "boom", {"InternalError": {"message": "boom"}}),
        (
            InvalidOpenAIRequest("no"),
            "Invalid request to OpenAI-compatible endpoint: no",
            {"InvalidOpenAICompatibleRequest": {"message": "no"}},
        ),
    ],
)
def test_messages_and_error_json(exc: LsdError, message: str, details: dict[str, object]) -> None:
    assert exc.message == message
    assert error_json(exc) == details


def test_native_body_is_compact_with_error_json_only_when_asked() -> None:
    exc = UnknownFunction("not_a_function")
    assert error_body(exc) == (
        b'{"error":"Unknown function: not_a_function","error_code":"not_found","field":"function_name"}'
    )
    assert error_body(exc, with_error_json=True) == (
        b'{"error":"Unknown function: not_a_function","error_json":{"UnknownFunction":{"name":"not_a_function"}},'
        b'"error_code":"not_found","field":"function_name"}'
    )


def test_openai_body_has_both_error_json_keys() -> None:
    body = orjson.loads(openai_error_body(UnknownFunction("x"), with_error_json=True))
    assert body["error"]["message"] == "Unknown function: x"
    assert body["error"]["error_json"] == body["error"]["tensorzero_error_json"] == {"UnknownFunction": {"name": "x"}}
    assert "error_json" not in orjson.loads(openai_error_body(UnknownFunction("x")))["error"]


def test_route_not_found() -> None:
    body = orjson.loads(route_not_found_body("GET", "/nope", 404, with_error_json=True))
    assert body["error"] == "Route not found: GET /nope"
    assert body["error_json"] == {"RouteNotFound": {"path": "/nope", "method": "GET"}}


def test_all_attempts_failed_in_tensorzero_terms() -> None:
    exc = AllAttemptsFailed(
        [AttemptFailure("a", "m", "p1", "server_error", "down"), AttemptFailure("a", "m", "p2", "timeout", "slow")]
    )
    assert (
        exc.message
        == "All variants failed with errors: a: All model providers failed to infer with errors: p1: down, p2: slow"
    )
    errors = error_json(exc)["AllVariantsFailed"]["errors"]
    providers = errors["a"]["AllModelProvidersFailed"]["provider_errors"]
    assert set(providers) == {"p1", "p2"} and "InferenceServer" in providers["p1"]
    assert "ModelProviderTimeout" in providers["p2"]  # a timeout, as TensorZero names it


def test_attempt_errors_name_the_provider_type_and_carry_the_raw_exchange() -> None:
    failures = [
        AttemptFailure("a", "m", "p1", "server_error", "down", status=503, provider_type="openai", raw_request="{}"),
        AttemptFailure("a", "m", "p2", "bad_request", "no", status=400, provider_type="anthropic", raw_response="x"),
    ]
    providers = error_json(AllAttemptsFailed(failures))["AllVariantsFailed"]["errors"]["a"]["AllModelProvidersFailed"]
    server = providers["provider_errors"]["p1"]["InferenceServer"]
    assert (server["provider_type"], server["raw_request"], server["raw_response"]) == ("openai", "{}", None)
    client = providers["provider_errors"]["p2"]["InferenceClient"]
    assert (client["provider_type"], client["status_code"], client["raw_response"]) == ("anthropic", 400, "x")


def test_provider_error_kinds() -> None:
    assert "InferenceClient" in error_json(ProviderError("nope", provider="p", status=400))
    assert "InferenceServer" in error_json(ProviderError("nope", provider="p", status=500))


def test_schema_validation() -> None:
    exc = SchemaValidation("input.system", "system", ["'Hi' is not of type 'object'"], "Hi", {"type": "object"})
    assert "JSON Schema validation failed:\n'Hi' is not of type 'object'" in exc.message
    assert exc.field == "input.system"
    source = error_json(exc)["InputValidation"]["source"]
    assert source == {"JsonSchemaValidation": {"messages": exc.messages, "data": "Hi", "schema": {"type": "object"}}}


def test_model_prefixes() -> None:
    assert parse_model("tensorzero::function_name::f") == ModelRef("tensorzero::", "function_name", "f")
    assert parse_model("lsd::model_name::openai::gpt-4o") == ModelRef("lsd::", "model_name", "openai::gpt-4o")
    assert parse_model("small", "embedding_model_name") == ModelRef("tensorzero::", "embedding_model_name", "small")
    for bad in ("chatgpt", "tensorzero::other::x", "", None):
        with pytest.raises(InvalidOpenAIRequest, match="`model` field must start with"):
            parse_model(bad)
    with pytest.raises(InvalidOpenAIRequest, match="cannot be empty"):
        parse_model("tensorzero::model_name::")


def test_text_parts_and_files() -> None:
    def parsed(content: object) -> object:
        body = {"model": "tensorzero::function_name::f", "messages": [{"role": "user", "content": content}]}
        return parse_chat_request(body).request.input.messages[0].content

    with pytest.raises(InvalidOpenAIRequest, match="Only one of `text` or `tensorzero::arguments`"):
        parsed([{"type": "text", "text": "a", "tensorzero::arguments": {}}])
    blocks = parsed([{"type": "file", "file": {"file_data": "data:application/pdf;base64,QQ==", "filename": "a.pdf"}}])
    assert blocks[0].mime_type == "application/pdf" and blocks[0].data == "QQ==" and blocks[0].filename == "a.pdf"  # type: ignore[index]


def test_token_limits_of_another_type_are_a_400_naming_the_field() -> None:
    base = {"model": "tensorzero::function_name::f", "messages": [{"role": "user", "content": "hi"}]}
    assert parse_chat_request({**base, "max_tokens": 50, "max_completion_tokens": 20}).request.params.max_tokens == 20
    for key, value in (("max_completion_tokens", "20"), ("max_tokens", True), ("max_tokens", 1.5)):
        with pytest.raises(InvalidRequest) as raised:
            parse_chat_request({**base, "max_tokens": 50, key: value})
        assert raised.value.field == key


def test_a_function_tool_without_parameters_takes_no_arguments_as_at_openai() -> None:
    base = {"model": "tensorzero::model_name::m", "messages": [{"role": "user", "content": "x"}]}
    for function in ({"name": "ping"}, {"name": "ping", "parameters": None}):
        request = parse_chat_request({**base, "tools": [{"type": "function", "function": function}]}).request
        assert request.additional_tools[0].parameters == {"type": "object", "properties": {}}
    with pytest.raises(InvalidRequest) as raised:
        parse_chat_request({**base, "tools": [{"type": "function", "function": {"name": "p", "parameters": 3}}]})
    assert raised.value.field == "tools[0].function.parameters"


def test_openai_user_and_metadata_are_tags_under_the_extension_tags() -> None:
    base = {"model": "tensorzero::model_name::m", "messages": [{"role": "user", "content": "x"}]}
    body = {**base, "user": "u-1", "metadata": {"team": "a", "env": "dev"}, "tensorzero::tags": {"env": "prod"}}
    assert parse_chat_request(body).request.tags == {"team": "a", "env": "prod", "user": "u-1"}
    for bad, field in (({"user": 3}, "user"), ({"metadata": {"k": 1}}, "metadata.k")):
        with pytest.raises(InvalidRequest) as raised:
            parse_chat_request({**base, **bad})
        assert raised.value.field == field


def test_a_chat_model_name_on_the_embeddings_route_is_told_the_embedding_form() -> None:
    with pytest.raises(InvalidOpenAIRequest, match="tensorzero::embedding_model_name::my_model"):
        parse_model("tensorzero::model_name::oai", "embedding_model_name")
    assert parse_model("small", "embedding_model_name") == ModelRef("tensorzero::", "embedding_model_name", "small")


def test_a_method_not_allowed_says_so() -> None:
    body = orjson.loads(route_not_found_body("GET", "/inference", 405))
    assert body == {"error": "method not allowed: GET /inference", "error_code": "method_not_allowed"}
    assert orjson.loads(route_not_found_body("GET", "/nope", 404))["error_code"] == "not_found"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "17"}, 17.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "inf"}, MAX_RETRY_AFTER_S),  # math.ceil(inf) raised inside the error handler: a 500
        ({"retry-after": "1e400"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date passed
        ({}, None),
    ],
)
def test_a_providers_retry_after_is_read_within_bounds(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_s(headers) == seconds


def test_error_json_caps_raw_exchanges_and_names_a_stream_errors_provider_type() -> None:
    big = "x" * 100_000
    failure = AttemptFailure("a", "m", "p", "server_error", "down", status=500, provider_type="openai", raw_request=big)
    server = error_json(AllAttemptsFailed([failure]))["AllVariantsFailed"]["errors"]["a"]["AllModelProvidersFailed"]
    raw = server["provider_errors"]["p"]["InferenceServer"]["raw_request"]
    assert raw.startswith("x" * 16384) and raw.endswith("[83616 more characters in model_inference_data]")
    event = ProviderError("cut", provider="my_openai", status=500)
    event.provider_type = "openai"  # a stream's error event knows its provider's type
    assert error_json(event)["InferenceServer"]["provider_type"] == "openai"


def test_a_provider_answer_about_the_gateways_key_is_not_passed_on() -> None:
    """Google answers a bad key with 400 (kind auth): the gateway's problem, a 502, not the client's 400."""
    bad_key = AttemptFailure("a", "m", "gemini", "auth", "API key not valid", status=400)
    assert passed_on(AllAttemptsFailed([bad_key])).http_status == 502
    overflow = AttemptFailure("a", "m", "gemini", "bad_request", "too long", status=400)
    assert passed_on(AllAttemptsFailed([overflow])).http_status == 400


@pytest.mark.parametrize(
    ("status", "body", "overflow"),
    [
        (400, '{"error": {"message": "too long", "code": "context_length_exceeded"}}', True),  # OpenAI, Groq
        (400, '{"error": {"code": 400, "message": "The input token count (1048577) exceeds the maximum number of '
         'tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}', True),  # Gemini
        (400, '{"message": "Input is too long for requested model."}', True),  # Bedrock
        (400, '{"error": {"message": "This model\'s maximum context length is 4096 tokens."}}', True),  # vLLM
        (400, '{"error": {"message": "messages: field required"}}', False),
        (429, '{"error": {"message": "maximum context of rate limits"}}', False),
    ],
)  # fmt: skip
def test_another_vendors_context_overflow_reads_as_each_clients_sign_for_it(
    status: int, body: str, overflow: bool
) -> None:
    """Claude Code compacts on 400 "prompt is too long", Codex on the code context_length_exceeded: an overflow from
    a provider of another vendor is given in those words (claudecode2 review: Gemini's was passed on as it was)."""
    failure = ProviderError("failed", provider="p", status=status)
    failure.raw_response = body
    failure.provider_message = str(orjson.loads(body).get("error", orjson.loads(body)).get("message"))
    answer = passed_on(failure)
    assert isinstance(answer, ProviderAnswer) and answer.context_overflow is overflow
    anthropic = orjson.loads(anthropic_error_body(answer))["error"]["message"]
    assert anthropic.startswith("prompt is too long") is overflow
    code = orjson.loads(openai_error_body(answer))["error"]["code"]
    assert (code == "context_length_exceeded") is overflow
    if status == 429:  # OpenAI's code for a rate limit, which another vendor's body lacks (webui review)
        assert code == "rate_limit_exceeded"
