"""Parsing of `[evaluations.NAME]`: which function an evaluation scores, and its evaluators."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lsd.config.functions import _json_file, _template_file, _variant
from lsd.config.model import FunctionConfig, ModelConfig, TemplateConfig
from lsd.config.reader import Table

EVALUATOR_TYPES = ("exact_match", "json_schema", "regex", "llm_judge")


def metric_name(evaluation: str, evaluator: str) -> str:
    """The feedback metric an evaluator's results are recorded under."""
    return f"lsd::evaluation::{evaluation}::evaluator::{evaluator}"


@dataclass(frozen=True, slots=True)
class ExactMatchConfig:
    """The output equals the datapoint's reference output."""

    name: str
    cutoff: float | None = None
    type: Literal["exact_match"] = "exact_match"
    output_type: Literal["boolean"] = "boolean"
    optimize: Literal["max"] = "max"


@dataclass(frozen=True, slots=True)
class JsonSchemaConfig:
    """The output is JSON that validates against `schema` (default: the function's output schema)."""

    name: str
    schema: Mapping[str, Any]
    cutoff: float | None = None
    type: Literal["json_schema"] = "json_schema"
    output_type: Literal["boolean"] = "boolean"
    optimize: Literal["max"] = "max"


@dataclass(frozen=True, slots=True)
class RegexConfig:
    """The output text contains a match of `pattern` (re.search; anchor it for a full match)."""

    name: str
    pattern: str
    cutoff: float | None = None
    type: Literal["regex"] = "regex"
    output_type: Literal["boolean"] = "boolean"
    optimize: Literal["max"] = "max"


@dataclass(frozen=True, slots=True)
class LlmJudgeConfig:
    """A function/variant of the same config asked to judge the output through a prompt template.

    The judge gets one user message: `prompt` rendered with `input`, `output`, `output_text` and `reference`.
    Its score is `output_field` of a json judge's parsed output, or a chat judge's text."""

    name: str
    function_name: str
    variant_name: str
    prompt: TemplateConfig
    output_type: Literal["boolean", "float"]
    optimize: Literal["max", "min"]
    output_field: str = "score"
    cutoff: float | None = None
    type: Literal["llm_judge"] = "llm_judge"


EvaluatorConfig = ExactMatchConfig | JsonSchemaConfig | RegexConfig | LlmJudgeConfig


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    name: str
    function_name: str
    evaluators: Mapping[str, EvaluatorConfig] = field(default_factory=dict)
    description: str | None = None


def evaluation_from(
    name: str,
    t: Table,
    functions: Mapping[str, FunctionConfig],
    models: dict[str, ModelConfig] | None = None,
    generated: dict[str, FunctionConfig] | None = None,
) -> EvaluationConfig:
    """One `[evaluations.NAME]`. A TensorZero-form llm_judge (its judge's variants inline) adds its judge function
    to `generated` (see _tensorzero_judge)."""
    t.choice("type", ("inference", "static"), "inference")  # TensorZero's kinds: both score a function's outputs
    function_name = t.str("function_name", "", required=True)
    function = functions.get(function_name)
    if function_name and function is None:
        t.error("function_name", f"unknown function {function_name!r}: define [functions.{function_name}]")
    evaluators: dict[str, EvaluatorConfig] = {}
    for ename, e in t.subtables("evaluators"):
        if "::" in ename:
            e.error("", "an evaluator name must not contain '::'")
        e.str("description")  # TensorZero's: documentation only
        if e.has("variants") and e.str("type") == "llm_judge":
            evaluator: EvaluatorConfig | None = _tensorzero_judge(name, ename, e, models or {}, generated)
        else:
            evaluator = _evaluator(ename, e, function, functions)
        e.finish()
        if evaluator is not None:
            evaluators[ename] = evaluator
    if not evaluators and not t.has("evaluators"):
        t.error("evaluators", "an evaluation needs at least one evaluator")
    if "::" in name:
        t.error("", "an evaluation name must not contain '::'")
    evaluation = EvaluationConfig(
        name=name, function_name=function_name, evaluators=evaluators, description=t.str("description")
    )
    t.finish()
    return evaluation


def _evaluator(
    name: str, t: Table, function: FunctionConfig | None, functions: Mapping[str, FunctionConfig]
) -> EvaluatorConfig | None:
    # Keys another type takes (optimize on exact_match, say) are rejected by finish() as unknown keys.
    kind = t.choice("type", EVALUATOR_TYPES, None, required=True)
    if kind == "exact_match":
        return ExactMatchConfig(name, cutoff=_cutoff(t, "boolean"))
    if kind == "json_schema":
        if t.has("schema"):
            schema = _json_file(t, "schema")
        else:
            schema = dict(function.output_schema) if function and function.output_schema else None
            if schema is None and function is not None:
                t.error("schema", "required: the function has no output_schema to default to")
        return JsonSchemaConfig(name, schema or {}, cutoff=_cutoff(t, "boolean"))
    if kind == "regex":
        pattern = t.str("pattern", "", required=True, env=False)
        try:
            re.compile(pattern)
        except re.error as exc:
            t.error("pattern", f"invalid regular expression: {exc}")
        return RegexConfig(name, pattern, cutoff=_cutoff(t, "boolean"))
    if kind == "llm_judge":
        return _judge(name, t, functions)
    return None


def _judge(name: str, t: Table, functions: Mapping[str, FunctionConfig]) -> LlmJudgeConfig:
    function_name = t.str("function_name", "", required=True)
    variant_name = t.str("variant_name", "", required=True)
    judge = functions.get(function_name)
    if function_name and judge is None:
        t.error("function_name", f"unknown function {function_name!r}: the judge is a function of this config")
    elif judge is not None and variant_name and variant_name not in judge.variants:
        t.error("variant_name", f"unknown variant {variant_name!r} of function {function_name!r}")
    prompt: TemplateConfig | None = None
    if t.has("prompt") == t.has("prompt_path"):
        t.error("prompt", "give exactly one of prompt (the template text) and prompt_path (a file)")
        t.raw("prompt")
        t.raw("prompt_path")
    elif t.has("prompt"):
        text = t.str("prompt", "", env=False)
        prompt = TemplateConfig(text, t.base_dir / f"<{t.key_path('prompt')}>")
    else:
        prompt = _template_file(t, "prompt_path")
    output_type = t.choice("output_type", ("boolean", "float"), "boolean", required=True)
    return LlmJudgeConfig(
        name=name,
        function_name=function_name,
        variant_name=variant_name,
        prompt=prompt or TemplateConfig("", t.base_dir),
        output_type=output_type,
        optimize=t.choice("optimize", ("max", "min"), "max", required=True),
        output_field=t.str("output_field", "score"),
        cutoff=_cutoff(t, output_type),
    )


def judge_function_name(evaluation: str, evaluator: str) -> str:
    """The function LSD makes of a TensorZero-form llm_judge's inline variants (TensorZero's own name for it)."""
    return f"tensorzero::llm_judge::{evaluation}::{evaluator}"


# The judge's user message for a TensorZero-form llm_judge: the datapoint's input, the output being judged, and
# (include.reference_output) the reference output, each under a heading.
_JUDGE_PROMPT = (
    "# Input\n\n{{ input | tojson }}\n\n# Generated Output\n\n{{ output_text }}"
    "{% if reference is not none %}\n\n# Reference Output\n\n{{ reference | tojson }}{% endif %}"
)


def _tensorzero_judge(
    evaluation: str, name: str, t: Table, models: dict[str, ModelConfig], generated: dict[str, FunctionConfig] | None
) -> LlmJudgeConfig:
    """TensorZero's llm_judge: its judge variants inline (`variants.V`: a variant's keys plus `system_instructions`,
    a file of plain text, and `active`), `include.reference_output`, `input_format`. LSD makes them a json function
    (judge_function_name) whose answer is {"score": boolean | number}, asked with _JUDGE_PROMPT, and uses the
    active variant (or the only one)."""
    output_type = t.choice("output_type", ("boolean", "float"), "boolean", required=True)
    include = t.table("include")
    with_reference = include.bool("reference_output", False)
    include.finish()
    t.choice("input_format", ("serialized", "messages"), "serialized")  # both: the input as JSON in the prompt
    variants = {}
    active: list[str] = []
    for vname, v in t.subtables("variants"):
        if v.bool("active", False):
            active.append(vname)
        instructions = _template_file(v, "system_instructions")
        variant = _variant(vname, v, "json", models, {})
        if variant is None:
            continue
        if instructions is not None:  # plain text, not a template: kept as written
            text = instructions.source.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}")
            system = TemplateConfig("{% raw %}" + text + "{% endraw %}", instructions.path, instructions.key_path)
            variant = replace(variant, templates={**variant.templates, "system": system})
        variants[vname] = variant
    chosen = active[0] if len(active) == 1 else next(iter(variants)) if len(variants) == 1 and not active else ""
    if variants and not chosen:
        t.error("variants", "mark exactly one judge variant active = true (or give one variant)")
    score: dict[str, Any] = {"type": "boolean" if output_type == "boolean" else "number"}
    function = FunctionConfig(
        name=judge_function_name(evaluation, name),
        type="json",
        variants=variants,
        description=f"the llm_judge {name!r} of evaluation {evaluation!r}",
        output_schema={"type": "object", "properties": {"score": score}, "required": ["score"]},
    )
    if generated is not None:
        generated[function.name] = function
    prompt = _JUDGE_PROMPT if with_reference else _JUDGE_PROMPT.split("{% if reference")[0]
    return LlmJudgeConfig(
        name=name,
        function_name=function.name,
        variant_name=chosen,
        prompt=TemplateConfig(prompt, t.base_dir / f"<{t.key_path('variants')}>"),
        output_type=output_type,
        optimize=t.choice("optimize", ("max", "min"), "max", required=True),
        output_field="score",
        cutoff=_cutoff(t, output_type),
    )


def _cutoff(t: Table, output_type: str) -> float | None:
    cutoff: float | None = t.float("cutoff")
    if cutoff is not None and output_type == "boolean" and not 0 <= cutoff <= 1:
        t.error("cutoff", f"a boolean evaluator's mean is a fraction: expected 0..1, got {cutoff}")
    return cutoff
