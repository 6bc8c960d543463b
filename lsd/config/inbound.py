"""`[inbound.*]`: how the foreign-shaped inbound APIs name LSD's functions and models (`[inbound.anthropic]`,
`[inbound.openai]`, `[inbound.gemini]`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lsd.config.reader import Table

TargetKind = Literal["function_name", "model_name"]
PREFIXES = ("lsd::", "tensorzero::")
# The model name a client sent when `[inbound.*] models` mapped it (`claude-sonnet-4-5`, `gpt-5.5`), kept as this tag:
# which client tool sent what, where the function and variant alone cannot tell it from any other route's.
MODEL_ALIAS_TAG = "lsd::model_alias"
ANY_MODEL = "*"  # a `models` entry for every other plain name (a client's side model: aider's gpt-4o-mini)
MAX_ANY_NAME_CHARS = 256  # a longer name is not taken by `*` (it would be echoed and tagged on every row)


@dataclass(frozen=True, slots=True)
class InboundTarget:
    """What a client's `model` stands for: an LSD function or an LSD model, by name."""

    kind: TargetKind
    name: str


@dataclass(frozen=True, slots=True)
class AnthropicInboundConfig:
    """`[inbound.anthropic]`: `models` maps a plain model name a Claude client sends (`claude-sonnet-4-5`) to an
    LSD model or `lsd::function_name::F`."""

    models: Mapping[str, InboundTarget] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenAIInboundConfig:
    """`[inbound.openai]`: `models` maps a plain model name an OpenAI client sends (`gpt-5-codex`) on the Chat
    Completions and Responses routes to an LSD model or `lsd::function_name::F`."""

    models: Mapping[str, InboundTarget] = field(default_factory=dict)
    # what GET /openai/v1/models lists: "all" (the aliases, then every function and model by its lsd:: name) or
    # "aliases" (only the plain names of `models`: what a chat UI's model picker should offer its users)
    list_models: str = "all"


@dataclass(frozen=True, slots=True)
class GeminiInboundConfig:
    """`[inbound.gemini]`: `models` maps the model name a Gemini client puts in its URL (`gemini-2.5-pro`) to an
    LSD model or `lsd::function_name::F`."""

    models: Mapping[str, InboundTarget] = field(default_factory=dict)
    # client embedding model name (`gemini-embedding-001`) -> an `[embedding_models]` key: the `models` entries
    # whose value names an embedding model (bare, or `lsd::embedding_model_name::E`), for embedContent
    embedding_models: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundConfig:
    anthropic: AnthropicInboundConfig = field(default_factory=AnthropicInboundConfig)
    openai: OpenAIInboundConfig = field(default_factory=OpenAIInboundConfig)
    gemini: GeminiInboundConfig = field(default_factory=GeminiInboundConfig)


def parse_target(value: str) -> InboundTarget | None:
    """`lsd::function_name::F`, `lsd::model_name::M` (or with `tensorzero::`) as a target; None for a bare name
    (which the caller looks up itself) or a prefixed name with nothing after it."""
    for prefix in PREFIXES:
        for kind in ("function_name", "model_name"):
            marker = f"{prefix}{kind}::"
            if value.startswith(marker):
                name = value[len(marker) :]
                return InboundTarget(kind, name) if name else None
    return None


def mapped(models: Mapping[str, InboundTarget], name: str) -> InboundTarget | None:
    """What `models` maps a client's model name to: its own entry, else (a plain name) the `*` entry, else None."""
    if name == ANY_MODEL:  # the entry's own key is no model's name
        return None
    found = models.get(name)
    if found is None and "::" not in name and len(name) <= MAX_ANY_NAME_CHARS:  # not LSD's, nor a shorthand
        found = models.get(ANY_MODEL)
    return found


def inbound_from(
    t: Table, models: Mapping[str, Any], functions: Mapping[str, Any], embedding_models: Mapping[str, Any]
) -> InboundConfig:
    """`[inbound]`; every mapped name must be a configured model, a `type::model` shorthand, or a configured
    function — on the Gemini route also an embedding model (errors name the key, e.g.
    `inbound.anthropic.models.claude-sonnet-4-5`)."""
    anthropic = _mapped(t.table("anthropic"), models, functions)
    openai_table = t.table("openai")
    list_models = openai_table.choice("list_models", ("all", "aliases"), "all")
    openai = _mapped(openai_table, models, functions)
    embeddings: dict[str, str] = {}
    gemini = _mapped(t.table("gemini"), models, functions, embedding_models, embeddings)
    t.finish()
    return InboundConfig(
        anthropic=AnthropicInboundConfig(models=anthropic),
        openai=OpenAIInboundConfig(models=openai, list_models=list_models),
        gemini=GeminiInboundConfig(models=gemini, embedding_models=embeddings),
    )


EMBEDDING_PREFIXES = tuple(f"{p}embedding_model_name::" for p in PREFIXES)


def _mapped(
    api: Table,
    models: Mapping[str, Any],
    functions: Mapping[str, Any],
    embedding_models: Mapping[str, Any] | None = None,
    embeddings: dict[str, str] | None = None,
) -> dict[str, InboundTarget]:
    """One API's `models` table: each client name's target. With `embeddings`, the entries naming an embedding
    model go there instead."""
    table = api.table("models")
    mapped: dict[str, InboundTarget] = {}
    for name in list(table.data):
        value = table.str(name, env=False)
        if not isinstance(value, str):
            continue
        if name.startswith(PREFIXES):  # read as LSD's own name before any mapping: the entry would be dead
            table.error(name, "a client's model name cannot start with lsd:: or tensorzero:: (those are LSD's names)")
            continue
        if embeddings is not None and embedding_models is not None:
            embedding = next((value[len(p) :] for p in EMBEDDING_PREFIXES if value.startswith(p)), value)
            if embedding in embedding_models and value not in models:
                if name == ANY_MODEL:
                    table.error(name, "the `*` entry takes chat names only: map each embedding name on its own")
                else:
                    embeddings[name] = embedding
                continue
            if value.startswith(EMBEDDING_PREFIXES):
                table.error(name, f"unknown embedding model {embedding!r}: define [embedding_models.{embedding}]")
                continue
        target = _target(table, name, value, models, functions)
        if target is not None:
            mapped[name] = target
    table.finish()
    api.finish()
    return mapped


def _target(
    table: Table, key: str, value: str, models: Mapping[str, Any], functions: Mapping[str, Any]
) -> InboundTarget | None:
    target = parse_target(value)
    if target is None:
        if value.startswith(PREFIXES):
            table.error(key, f"expected `lsd::function_name::F`, `lsd::model_name::M` or a model name, got {value!r}")
            return None
        target = InboundTarget("model_name", value)
    if target.kind == "function_name" and target.name not in functions:
        table.error(key, f"unknown function {target.name!r}: define [functions.{target.name}]")
        return None
    if target.kind == "model_name" and target.name not in models and "::" not in target.name:
        table.error(key, f"unknown model {target.name!r}: define [models.{target.name}] or use a shorthand")
        return None
    return target
