"""The `model` field of the OpenAI-compatible routes: `tensorzero::function_name::F`, `tensorzero::model_name::M`
(or `lsd::`), a plain name `[inbound.openai] models` maps, or for embeddings `tensorzero::embedding_model_name::E`
(or a bare name); any other value is TensorZero's 400 and message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.config.inbound import PREFIXES, InboundTarget, mapped
from lsd.errors import InvalidOpenAIRequest
from lsd.immutable import immutable

MODEL_PREFIX_HINT = (
    "`model` field must start with `tensorzero::function_name::` or `tensorzero::model_name::`. For example, "
    "`tensorzero::function_name::my_function` for a function `my_function` defined in your config, "
    "`tensorzero::model_name::my_model` for a model `my_model` defined in your config, or default functions like "
    "`tensorzero::model_name::openai::gpt-4o-mini`."
)


EMBEDDING_MODEL_HINT = (
    "`model` field must be `tensorzero::embedding_model_name::my_model` (or `lsd::embedding_model_name::...`, or "
    "the bare name) for an embedding model `my_model` defined in your config's `[embedding_models]`"
)


@immutable
class ModelRef:
    """A parsed `model` field: the prefix the client used (echoed in answers), the kind and the name."""

    prefix: str  # "tensorzero::" or "lsd::"
    kind: str  # function_name | model_name | embedding_model_name
    name: str
    alias: str | None = None  # the client's plain name, mapped by [inbound.openai] models (echoed as sent)


def parse_model(
    model: Any, kind: str = "function_name", aliases: Mapping[str, InboundTarget] | None = None
) -> ModelRef:
    """`tensorzero::function_name::F` / `tensorzero::model_name::M` (or `lsd::`) for chat, or a plain name
    `aliases` (`[inbound.openai] models`) maps, where any other value is a 400 as in TensorZero;
    `tensorzero::embedding_model_name::E` (or a bare name) for embeddings."""
    if not isinstance(model, str) or not model:
        raise InvalidOpenAIRequest(MODEL_PREFIX_HINT, field="model")
    target = mapped(aliases or {}, model) if kind != "embedding_model_name" else None
    if target is not None:
        return ModelRef("lsd::", target.kind, target.name, alias=model)
    kinds = ("embedding_model_name",) if kind == "embedding_model_name" else ("function_name", "model_name")
    for prefix in PREFIXES:
        for key in kinds:
            marker = f"{prefix}{key}::"
            if model.startswith(marker):
                name = model[len(marker) :]
                if not name:
                    raise InvalidOpenAIRequest(
                        f'{key} (passed in model field after "{marker}") cannot be empty', field="model"
                    )
                return ModelRef(prefix, key, name)
    if kind == "embedding_model_name":
        if not model.startswith(PREFIXES):
            return ModelRef("tensorzero::", kind, model)  # TensorZero accepts a bare name here (deprecated)
        raise InvalidOpenAIRequest(EMBEDDING_MODEL_HINT, field="model")
    raise InvalidOpenAIRequest(MODEL_PREFIX_HINT, field="model")
