"""Models as the engine uses them: configured `[models.*]` plus shorthand names like `dummy::echo`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path

from lsd.config.model import Config, ModelConfig, ProviderConfig, RetryConfig, TimeoutsConfig
from lsd.config.reader import ErrorSink
from lsd.errors import ConfigError, InvalidRequest, NotFound, UnknownModel
from lsd.immutable import immutable
from lsd.providers.base import Provider
from lsd.providers.registry import PROVIDER_TYPES, build_provider


@immutable
class Model:
    name: str
    providers: tuple[Provider, ...]  # in routing order
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    retries: RetryConfig = field(default_factory=RetryConfig)  # embedding models only: variants retry chat models


# Shorthand model names from requests (`openai::gpt-4o-mini`): at most this long, and at most this many remembered
# (a caller inventing names must not grow the process for good; past the bound each is built for its request).
MAX_SHORTHAND_CHARS = 256
MAX_INVENTED_MODELS = 1000


class ModelTable:
    """Every model by name. Shorthand names (`type::model_name`) are built on first use and kept (up to a bound)."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._models = dict(models)
        self._invented = 0

    @classmethod
    def from_config(cls, config: Config) -> ModelTable:
        """Build every configured provider; raise ConfigError listing every problem."""
        sink = ErrorSink()
        models = {name: _build(model, sink) for name, model in config.models.items()}
        for function in config.functions.values():
            for variant in function.variants.values():
                if variant.model not in models and "::" in variant.model:
                    models[variant.model] = _shorthand(
                        variant.model, sink, f"functions.{function.name}.variants.{variant.name}.model"
                    )
        if sink.errors:
            raise ConfigError(sink.errors)
        return cls(models)

    @classmethod
    def embeddings_from_config(cls, config: Config) -> ModelTable:
        """The `[embedding_models.*]` table; every provider must support embeddings."""
        sink = ErrorSink()
        models = {name: _build(model, sink) for name, model in config.embedding_models.items()}
        for name, model in models.items():
            for provider in model.providers:
                if not provider.supports_embeddings:
                    sink.add(
                        f"embedding_models.{name}.providers.{provider.name}.type",
                        f"provider type {provider.type_name!r} does not support embeddings",
                    )
        # A dicl variant's shorthand embedding model (`openai::text-embedding-3-small`) must embed too.
        for function in config.functions.values():
            for variant in function.variants.values():
                name = variant.dicl.embedding_model if variant.dicl is not None else ""
                if name in models or "::" not in name:
                    continue
                key = f"functions.{function.name}.variants.{variant.name}.embedding_model"
                models[name] = model = _shorthand(name, sink, key)
                if any(not p.supports_embeddings for p in model.providers):
                    sink.add(key, f"provider type {name.split('::', 1)[0]!r} does not support embeddings")
        if sink.errors:
            raise ConfigError(sink.errors)
        return cls(models)

    def get(self, name: str, *, field_name: str = "model_name") -> Model:
        model = self._models.get(name)
        if model is None:
            if "::" not in name:
                raise UnknownModel(name, field=field_name)
            if len(name) > MAX_SHORTHAND_CHARS:
                raise InvalidRequest.at(field_name, f"a model name is at most {MAX_SHORTHAND_CHARS} characters")
            sink = ErrorSink()
            model = _shorthand(name, sink, field_name)
            if sink.errors:
                raise NotFound(f"invalid model name {name!r}: {sink.errors[0]}", field=field_name)
            # Names callers invent are remembered up to a bound: each is a provider object kept for good.
            if self._invented < MAX_INVENTED_MODELS:
                self._invented += 1
                self._models[name] = model
        return model

    def names(self) -> list[str]:
        return sorted(self._models)


def _build(model: ModelConfig, sink: ErrorSink) -> Model:
    providers = [build_provider(model.providers[name], sink) for name in model.routing if name in model.providers]
    return Model(model.name, tuple(p for p in providers if p is not None), model.timeouts, model.retries)


def _shorthand(name: str, sink: ErrorSink, key_path: str) -> Model:
    provider_type, _, model_name = name.partition("::")
    if provider_type not in PROVIDER_TYPES or not model_name:
        known = ", ".join(sorted(PROVIDER_TYPES))
        sink.add(key_path, f"shorthand {name!r} must be 'TYPE::MODEL' with TYPE one of: {known}")
        return Model(name, ())
    config = ProviderConfig(
        name=provider_type,
        type=provider_type,
        options={"model_name": model_name},
        key_path=key_path,
        base_dir=Path.cwd(),
    )
    provider = build_provider(config, sink)
    return Model(name, (provider,) if provider else ())
