"""The Anthropic route's provider-narrowed extras: what a Messages request asks that only some providers' bodies can
carry (Anthropic's own fields and beta header for Anthropic-bodied providers; a structured output's schema for Chat
Completions- and Gemini-bodied ones), as extra_body/extra_headers entries each narrowed to its model and provider.
The request side: lsd.api.anthropic_request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from lsd.api.anthropic_request import ANTHROPIC_BODY_TYPES, MessagesRequest
from lsd.api.gemini_signatures import GEMINI_BODY_TYPES
from lsd.providers.openai.compatible import CHAT_COMPLETIONS_TYPES
from lsd.types import BodyPatch, HeaderPatch, Json


def provider_extras(
    call: MessagesRequest, providers: Iterable[tuple[str, str, str]], beta: str | None
) -> tuple[tuple[BodyPatch, ...], tuple[HeaderPatch, ...]]:
    """The Anthropic-only fields (and the client's `anthropic-beta` header) as extra_body/extra_headers entries for
    each (model, provider, provider type) that takes Anthropic's body, so that no other provider sees them; a
    structured output's schema as `response_format` for each that takes Chat Completions' body."""
    bodies: list[BodyPatch] = []
    headers: list[HeaderPatch] = []
    for model, provider, provider_type in providers:
        if call.response_format is not None:
            bodies.extend(_structured_output(call.response_format, model, provider, provider_type))
        if provider_type not in ANTHROPIC_BODY_TYPES:
            continue
        for pointer, value in call.anthropic_fields.items():
            bodies.append(BodyPatch(pointer, value, model_name=model, provider_name=provider))
        if beta:
            headers.append(HeaderPatch("anthropic-beta", beta, model_name=model, provider_name=provider))
    return tuple(bodies), tuple(headers)


def _structured_output(
    response_format: Mapping[str, Json], model: str, provider: str, provider_type: str
) -> list[BodyPatch]:
    """A model's structured output in the body of a provider that is not Anthropic's: Chat Completions'
    `response_format`, Gemini's JSON schema (`responseJsonSchema`, JSON Schema as is, as its own wire sends a
    strict output schema), or Converse's `outputConfig.textFormat` (Bedrock: the schema as a JSON string)."""
    if provider_type in CHAT_COMPLETIONS_TYPES:
        return [BodyPatch("/response_format", response_format, model_name=model, provider_name=provider)]
    if provider_type in GEMINI_BODY_TYPES:
        schema = response_format["json_schema"]["schema"]
        return [
            BodyPatch(
                "/generationConfig/responseMimeType", "application/json", model_name=model, provider_name=provider
            ),
            BodyPatch("/generationConfig/responseJsonSchema", schema, model_name=model, provider_name=provider),
        ]
    if provider_type == "aws_bedrock":
        definition = {"schema": orjson.dumps(response_format["json_schema"]["schema"]).decode(), "name": "response"}
        text_format = {"type": "json_schema", "structure": {"jsonSchema": definition}}
        return [BodyPatch("/outputConfig/textFormat", text_format, model_name=model, provider_name=provider)]
    return []
