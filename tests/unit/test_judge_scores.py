"""A json judge's score is read from its answer even when the answer is off the judge's output schema
({"score": "yes"} where the schema says boolean), as leniently as a chat judge's (docs/evaluations.md)."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from lsd.config.evaluations import LlmJudgeConfig
from lsd.evaluations.evaluators import LlmJudge
from lsd.inference.result import InferenceResult, JsonOutput
from lsd.types import Usage


def judged(raw: str | None, parsed: Any, output_type: str = "boolean") -> tuple[Any, str | None]:
    config = LlmJudgeConfig("j", "judge", "v", cast(Any, None), cast(Any, output_type), "max")
    judge = LlmJudge(config, cast(Any, None), None, "json")
    result = InferenceResult(
        UUID(int=1), UUID(int=2), "judge", "json", "v", "m", "p", (), JsonOutput(raw, parsed), Usage(), None, None
    )
    return judge._score(result)


def test_an_answer_off_the_schema_is_still_scored() -> None:
    assert judged('{"score": true}', {"score": True}) == (True, None)
    assert judged('{"score": "yes"}', None) == (True, None)  # off a {"score": boolean} schema
    assert judged('{"score": 1}', None) == (True, None)
    assert judged('{"score": "0.5"}', None, "float") == (0.5, None)
    assert judged('{"verdict": "yes"}', None)[1] == "the judge's answer has no 'score': '{\"verdict\": \"yes\"}'"
    assert judged("not json", None)[0] is None
