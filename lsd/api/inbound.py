"""What the foreign-shaped inbound APIs (Anthropic's Messages, Gemini's generateContent) share: the LSD function or
model a client's `model` names, and readers of a body's fields and `lsd::` extension keys, each naming its field.

`model` names an LSD function or model: `lsd::function_name::F`, `lsd::model_name::M` (or `tensorzero::`), a name
the API's `[inbound.<api>] models` table maps (its `*` entry for any other plain name), or a configured model's own
name (or a `type::model` shorthand).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeGuard, TypeVar

from lsd.config.inbound import ANY_MODEL, PREFIXES, InboundTarget, mapped, parse_target
from lsd.config.model import Config
from lsd.errors import InvalidRequest, UnknownFunction, UnknownModel
from lsd.inference.result import ToolCallOutput
from lsd.providers.base import Provider, json_object
from lsd.runtime import Runtime
from lsd.types import Json

T = TypeVar("T")
MAX_SHOWN_CHARS = 256

# The `lsd::<name>` (or `tensorzero::<name>`) keys a foreign-shaped body may carry beside the API's own fields.
EXTENSIONS = frozenset(
    {"tags", "episode_id", "variant_name", "dryrun", "cache_options", "credentials", "extra_body", "extra_headers"}
)


def resolve_target(model: Any, config: Config, aliases: Mapping[str, InboundTarget]) -> InboundTarget:
    """What `model` names; InvalidRequest (400) or UnknownFunction/UnknownModel (404), each naming `model`."""
    if not isinstance(model, str) or not model:
        raise InvalidRequest.at("model", "expected a non-empty string")
    target = parse_target(model)
    if target is None:
        if model.startswith(PREFIXES):
            raise InvalidRequest.at("model", f"expected lsd::function_name::F or lsd::model_name::M, got {model!r}")
        target = aliased_target(model, config, aliases) or InboundTarget("model_name", model)
    if target.kind == "function_name" and target.name not in config.functions:
        raise UnknownFunction(_shown(target.name), field="model")
    if target.kind == "model_name" and target.name not in config.models and "::" not in target.name:
        raise UnknownModel(_shown(target.name), field="model")
    return target


def _shown(name: str) -> str:
    """A name as an error repeats it: a client's 5,000-character name is not echoed whole."""
    return name if len(name) <= MAX_SHOWN_CHARS else name[:MAX_SHOWN_CHARS] + "…"


def aliased_target(model: str, config: Config, aliases: Mapping[str, InboundTarget]) -> InboundTarget | None:
    """What `aliases` maps a plain name to: its own entry, else — for a name that is not a model of the config nor
    a shorthand — the `*` entry."""
    if model in aliases and model != ANY_MODEL:
        return aliases[model]
    if model in config.models or "::" in model:
        return None
    return mapped(aliases, model)


def providers(services: Runtime, target: InboundTarget) -> Iterator[tuple[str, Provider]]:
    """(model name, provider) for every provider the target may route to: its variants' models in config order,
    each model's providers in routing order."""
    if target.kind == "model_name":
        names = [target.name]
    else:
        names = list(dict.fromkeys(v.model for v in services.config.functions[target.name].variants.values()))
    for name in names:
        model = services.engine.models.get(name, field_name="model")
        for provider in model.providers:
            yield model.name, provider


def tool_input(block: ToolCallOutput) -> dict[str, Json]:
    """A tool call's arguments as the object the foreign APIs answer with (Anthropic's `input`, Gemini's `args`):
    the checked arguments, else the raw ones when they are a JSON object, else {}."""
    if isinstance(block.arguments, dict):
        return block.arguments
    return json_object(block.raw_arguments or "{}") or {}


def unknown_keys(body: Mapping[str, Any], fields: frozenset[str]) -> None:
    """400 naming the first key that is neither one of the API's `fields` nor an `lsd::` extension."""
    for key in body:
        bare = key.split("::", 1)[1] if key.startswith(PREFIXES) else None
        if key not in fields and bare not in EXTENSIONS:
            raise InvalidRequest.at(key, "unknown field")


# ---- small readers, each naming its field ----------------------------------------------------------------------


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def number(body: Mapping[str, Any], key: str, path: str | None = None) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest.at(path or key, "expected a number")
    return float(value)


def strings(value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidRequest.at(path, "expected an array of strings")
    return tuple(value)


def required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidRequest.at(f"{path}.{key}", "required: a string")
    return value


def raw_extension(body: Mapping[str, Any], name: str) -> Any:
    for prefix in PREFIXES:
        if body.get(f"{prefix}{name}") is not None:
            return body[f"{prefix}{name}"]
    return None


def extension(body: Mapping[str, Any], name: str, parse: Callable[[Any, str], T]) -> T | None:
    """The `lsd::<name>` (or `tensorzero::<name>`) extension key, parsed with its path; None when absent."""
    for prefix in PREFIXES:
        value = body.get(f"{prefix}{name}")
        if value is not None:
            return parse(value, f"{prefix}{name}")
    return None


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest.at(path, "expected a string")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest.at(path, "expected a boolean")
    return value


def string_map(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidRequest.at(path, "expected an object of strings")
    return dict(value)


def patches(parse: Callable[[Any, str], T]) -> Callable[[Any, str], list[T]]:
    def parse_all(value: Any, path: str) -> list[T]:
        if not isinstance(value, list):
            raise InvalidRequest.at(path, "expected an array")
        return [parse(item, f"{path}[{i}]") for i, item in enumerate(value)]

    return parse_all
