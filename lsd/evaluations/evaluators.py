"""Evaluators: exact_match, json_schema, regex and llm_judge, each scoring one evaluated output."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import jsonschema
import orjson
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from lsd.config.evaluations import (
    EvaluationConfig,
    EvaluatorConfig,
    ExactMatchConfig,
    JsonSchemaConfig,
    LlmJudgeConfig,
    RegexConfig,
)
from lsd.config.model import Config
from lsd.errors import ConfigError, LsdError
from lsd.evaluations.datasets import Datapoint
from lsd.evaluations.outputs import canonical_reference, output_text
from lsd.inference.request import InferenceRequest
from lsd.inference.run import Engine, InferenceResult
from lsd.types import Input, Message, Text

_TRUE = frozenset({"true", "yes", "y", "pass", "correct", "1"})
_FALSE = frozenset({"false", "no", "n", "fail", "incorrect", "0"})


@dataclass(frozen=True, slots=True)
class Case:
    """One datapoint's evaluated output."""

    datapoint: Datapoint
    function_type: str
    inference_id: UUID
    output: Any  # as stored in chat_inferences/json_inferences.output
    canonical: Any  # lsd.evaluations.outputs.canonical(output)


@dataclass(frozen=True, slots=True)
class Verdict:
    value: bool | float | None  # None: the evaluator failed (error says why)
    error: str | None = None
    source: str = "evaluator"  # evaluator | human
    evaluator_inference_id: UUID | None = None
    cost: float | None = None
    feedback_id: UUID | None = None  # the metric feedback row that records the value


class Evaluator(Protocol):
    @property
    def config(self) -> EvaluatorConfig: ...

    async def evaluate(self, case: Case, tags: Mapping[str, str]) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class ExactMatch:
    config: ExactMatchConfig

    async def evaluate(self, case: Case, tags: Mapping[str, str]) -> Verdict:
        if not case.datapoint.has_reference:
            return Verdict(None, "the datapoint has no reference output")
        return Verdict(case.canonical == canonical_reference(case.datapoint.reference, case.function_type))


@dataclass(frozen=True, slots=True)
class JsonSchema:
    config: JsonSchemaConfig
    validator: jsonschema.Draft202012Validator

    async def evaluate(self, case: Case, tags: Mapping[str, str]) -> Verdict:
        parsed = case.output.get("parsed") if case.function_type == "json" else None
        if parsed is None:
            try:
                parsed = orjson.loads(output_text(case.output, case.function_type))
            except orjson.JSONDecodeError:
                return Verdict(False)
        return Verdict(self.validator.is_valid(parsed))


@dataclass(frozen=True, slots=True)
class Regex:
    config: RegexConfig
    pattern: re.Pattern[str]

    async def evaluate(self, case: Case, tags: Mapping[str, str]) -> Verdict:
        return Verdict(self.pattern.search(output_text(case.output, case.function_type)) is not None)


@dataclass(frozen=True, slots=True)
class LlmJudge:
    """Renders the prompt, asks the judge function/variant through the engine, reads a score from the answer."""

    config: LlmJudgeConfig
    engine: Engine
    template: Any  # a compiled Jinja2 template
    judge_type: str  # the judge function's type: chat | json

    async def evaluate(self, case: Case, tags: Mapping[str, str]) -> Verdict:
        context = {
            "input": case.datapoint.input_json,
            "output": case.canonical,
            "output_text": output_text(case.output, case.function_type),
            "reference": case.datapoint.reference,
        }
        try:
            prompt = self.template.render(context)
        except TemplateError as exc:
            return Verdict(None, f"the judge prompt failed to render: {exc}")
        request = InferenceRequest(
            input=Input(system=None, messages=(Message(role="user", content=(Text(prompt),)),)),
            function_name=self.config.function_name,
            variant_name=self.config.variant_name,
            tags=tags,
        )
        try:
            result = await self.engine.infer(request)
        except LsdError as exc:
            return Verdict(None, f"the judge failed: {exc.message}")
        value, error = self._score(result)
        return Verdict(value, error, evaluator_inference_id=result.inference_id, cost=result.cost)

    def _score(self, result: InferenceResult) -> tuple[bool | float | None, str | None]:
        if self.judge_type == "json":
            parsed = result.output.parsed if result.output else None
            if parsed is None and result.output is not None and result.output.raw:
                # Off the judge's output schema ({"score": "yes"} for a boolean score): the score is still read
                # from the answer, as leniently as a chat judge's.
                with contextlib.suppress(orjson.JSONDecodeError):
                    parsed = orjson.loads(result.output.raw)
            if not isinstance(parsed, dict) or self.config.output_field not in parsed:
                raw = result.output.raw if result.output else None
                return None, f"the judge's answer has no {self.config.output_field!r}: {raw!r}"
            answer = parsed[self.config.output_field]
        else:
            answer = result.text
        return score(answer, self.config.output_type)


def score(answer: Any, output_type: str) -> tuple[bool | float | None, str | None]:
    """A judge's answer as a boolean or a finite float: JSON values as they are, or their spelling in text."""
    if output_type == "boolean":
        if isinstance(answer, bool):
            return answer, None
        if isinstance(answer, int) and answer in (0, 1):
            return bool(answer), None
        if isinstance(answer, str) and answer.strip().lower() in _TRUE | _FALSE:
            return answer.strip().lower() in _TRUE, None
        return None, f"the judge answered {answer!r}, not a boolean"
    number: float | None = None
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        number = float(answer)
    elif isinstance(answer, str):
        try:
            number = float(answer.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        return None, f"the judge answered {answer!r}, not a finite number"
    return number, None


def build_evaluators(config: Config, evaluation: EvaluationConfig, engine: Engine) -> dict[str, Evaluator]:
    """Compile every evaluator of an evaluation; raises ConfigError naming each bad schema, pattern or prompt."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    errors: list[str] = []
    built: dict[str, Evaluator] = {}
    for name, e in evaluation.evaluators.items():
        path = f"evaluations.{evaluation.name}.evaluators.{name}"
        if isinstance(e, ExactMatchConfig):
            built[name] = ExactMatch(e)
        elif isinstance(e, JsonSchemaConfig):
            try:
                jsonschema.Draft202012Validator.check_schema(e.schema)
            except jsonschema.SchemaError as exc:
                errors.append(f"{path}.schema: invalid JSON Schema: {exc.message}")
                continue
            built[name] = JsonSchema(e, jsonschema.Draft202012Validator(e.schema))
        elif isinstance(e, RegexConfig):
            built[name] = Regex(e, re.compile(e.pattern))
        else:
            try:
                template = env.from_string(e.prompt.source)
            except TemplateError as exc:
                errors.append(f"{path}.prompt: {exc}")
                continue
            built[name] = LlmJudge(e, engine, template, config.functions[e.function_name].type)
    if errors:
        raise ConfigError(errors)
    return built
