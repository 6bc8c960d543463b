"""TensorZero's variant types beyond chat_completion: their names, their own keys, and the checks across variants.

`best_of_n_sampling` and `mixture_of_n` keep their `evaluator` / `fuser` table's chat_completion keys as the
variant's own (model, templates, params, retries): lsd.config.functions reads those; this module reads the rest
(`candidates`, `timeout_s`; `embedding_model`, `k`, `max_distance`, `system_instructions` for `dicl`).
"""

from __future__ import annotations

from collections.abc import Mapping

from lsd.config.model import CandidatesConfig, DiclConfig, FunctionConfig, ModelConfig, VariantConfig, VariantType
from lsd.config.reader import ErrorSink, Table

# Every name TensorZero reads (current and legacy) -> LSD's canonical type.
VARIANT_TYPES: Mapping[str, VariantType] = {
    "chat_completion": "chat_completion",
    "experimental_best_of_n_sampling": "best_of_n_sampling",
    "experimental_best_of_n": "best_of_n_sampling",
    "best_of_n_sampling": "best_of_n_sampling",
    "experimental_mixture_of_n": "mixture_of_n",
    "mixture_of_n": "mixture_of_n",
    "experimental_dynamic_in_context_learning": "dicl",
    "dicl": "dicl",
    "experimental_chain_of_thought": "chain_of_thought",
    "chain_of_thought": "chain_of_thought",
}
# The sub-table holding the chat_completion keys of the call that ends a candidates variant.
JUDGE_TABLES: Mapping[VariantType, str] = {"best_of_n_sampling": "evaluator", "mixture_of_n": "fuser"}
DEFAULT_TIMEOUT_S = 300.0


def variant_type(t: Table) -> VariantType | None:
    """The variant's `type`, canonical; None (with the error recorded) when it is missing or unknown."""
    name = t.str("type", "", required=True)
    if not name:
        return None
    kind = VARIANT_TYPES.get(name)
    if kind is None:
        names = ", ".join(repr(n) for n in VARIANT_TYPES)
        t.error("type", f"unknown variant type {name!r}: expected one of {names}")
    return kind


def candidates_from(t: Table) -> CandidatesConfig:
    """`candidates` (required, non-empty) and `timeout_s` of a best_of_n_sampling / mixture_of_n variant. The
    variant's `timeouts.non_streaming.total_ms`, when set, bounds the candidates instead of `timeout_s`."""
    candidates = t.str_list("candidates", (), required=True)
    if not candidates and t.has("candidates"):
        t.error("candidates", "must name at least one variant")
    timeout_s = t.float("timeout_s", DEFAULT_TIMEOUT_S, minimum=0.001)
    return CandidatesConfig(candidates=candidates, timeout_s=timeout_s)


def dicl_from(t: Table) -> DiclConfig:
    """A dicl variant's retrieval keys: `embedding_model` and `k` (required), `max_distance`,
    `system_instructions` (a text file, read now)."""
    instructions: str | None = None
    path = t.path_value("system_instructions")
    if path is not None:
        try:
            instructions = path.read_text(encoding="utf-8")
        except OSError as exc:
            t.error("system_instructions", f"cannot read {path}: {exc.strerror}")
    return DiclConfig(
        embedding_model=t.str("embedding_model", "", required=True),
        k=t.int("k", 0, minimum=0) if t.has("k") else _required(t, "k"),
        max_distance=t.float("max_distance", None, minimum=0.0),
        system_instructions=instructions,
    )


def _required(t: Table, key: str) -> int:
    t.error(key, "missing required key")
    return 0


def check_kind(t: Table, kind: VariantType, function_type: str) -> None:
    """What a type needs of its function: chain_of_thought is for json functions only."""
    if kind == "chain_of_thought" and function_type != "json":
        t.error("type", "a chain_of_thought variant is only for json functions (its answer is a JSON object)")


def check_candidates(t: Table, variants: Mapping[str, VariantConfig]) -> None:
    """Each candidate names a variant of the function that makes its own answer (not another candidates
    variant: no nesting). `t` is the function's table."""
    for variant in variants.values():
        if variant.candidates is None:
            continue
        for name in variant.candidates.candidates:
            other = variants.get(name)
            key = f"variants.{variant.name}.candidates"
            if other is None:
                t.error(key, f"names variant {name!r}, which is not a variant of this function")
            elif other.candidates is not None:
                t.error(key, f"names variant {name!r}, a {other.type} variant (candidates cannot be nested)")


def check_embedding_models(
    sink: ErrorSink, functions: Mapping[str, FunctionConfig], embedding_models: Mapping[str, ModelConfig]
) -> None:
    """Each dicl variant's `embedding_model` is an `[embedding_models.*]` key or a `type::model` shorthand."""
    for function in functions.values():
        for variant in function.variants.values():
            if variant.dicl is None:
                continue
            name = variant.dicl.embedding_model
            if name and name not in embedding_models and "::" not in name:
                sink.add(
                    f"functions.{function.name}.variants.{variant.name}.embedding_model",
                    f"unknown embedding model {name!r}: define [embedding_models.{name}] or use a shorthand like "
                    "'openai::text-embedding-3-small'",
                )
