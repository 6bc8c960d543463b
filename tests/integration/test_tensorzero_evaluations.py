"""TensorZero's `[evaluations]` form loads and runs: `type = "inference"`, an exact_match evaluator, and llm_judges
whose judge variants are inline (`variants.V` with `system_instructions` and `active`), `include.reference_output`
and `input_format`. The judge variants answer through a fake OpenAI server ({"score": ...})."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from lsd.config import parse
from lsd.config.evaluations import judge_function_name
from lsd.errors import ConfigError
from lsd.evaluations.datasets import read_jsonl
from lsd.evaluations.evaluators import build_evaluators
from lsd.evaluations.runner import EvaluationRunner
from lsd.runtime import open_runtime
from tests.fakes.openai_server import FakeOpenAI


def config(fake: FakeOpenAI, folder: Path) -> str:
    (folder / "judge").mkdir(exist_ok=True)
    (folder / "judge" / "system_instructions.txt").write_text("Judge the haiku. {{ not a template }}\n")
    return f"""
[models.writer]
routing = ["p"]
[models.writer.providers.p]
type = "openai"
model_name = "echo"
api_base = "{fake.url}/v1/"
api_key_location = "none"

[models.judge_yes]
routing = ["p"]
[models.judge_yes.providers.p]
type = "openai"
model_name = "score-true"
api_base = "{fake.url}/v1/"
api_key_location = "none"

[models.judge_count]
routing = ["p"]
[models.judge_count.providers.p]
type = "openai"
model_name = "score-3"
api_base = "{fake.url}/v1/"
api_key_location = "none"

[functions.write_haiku]
type = "chat"
[functions.write_haiku.variants.v1]
type = "chat_completion"
model = "writer"

[evaluations.haiku_eval]
type = "inference"
function_name = "write_haiku"

[evaluations.haiku_eval.evaluators.exact]
type = "exact_match"
description = "the reference, word for word"

[evaluations.haiku_eval.evaluators.valid_haiku]
type = "llm_judge"
output_type = "boolean"
optimize = "max"
include = {{ reference_output = true }}
cutoff = 0.5
[evaluations.haiku_eval.evaluators.valid_haiku.variants.cheap]
type = "chat_completion"
model = "judge_yes"
system_instructions = "judge/system_instructions.txt"
json_mode = "strict"
active = true
[evaluations.haiku_eval.evaluators.valid_haiku.variants.dear]
type = "chat_completion"
model = "judge_count"
system_instructions = "judge/system_instructions.txt"
json_mode = "strict"

[evaluations.haiku_eval.evaluators.metaphors]
type = "llm_judge"
output_type = "float"
optimize = "min"
input_format = "messages"
[evaluations.haiku_eval.evaluators.metaphors.variants.only]
type = "chat_completion"
model = "judge_count"
system_instructions = "judge/system_instructions.txt"
json_mode = "strict"
"""


async def test_a_tensorzero_evaluation_loads_and_its_inline_judges_score(database_url: str, tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        parsed = parse(config(fake, tmp_path), base_dir=tmp_path)
        judge = parsed.functions[judge_function_name("haiku_eval", "valid_haiku")]
        assert judge.type == "json" and sorted(judge.variants) == ["cheap", "dear"]
        assert judge.variants["cheap"].templates["system"].source.startswith("{% raw %}Judge the haiku.")
        evaluation = parsed.evaluations["haiku_eval"]
        data = tmp_path / "data.jsonl"
        data.write_text(
            "\n".join(
                json.dumps({"input": {"messages": [{"role": "user", "content": topic}]},
                            "output": [{"type": "text", "text": f"echo: {topic}"}]})
                for topic in ("autumn", "rain")
            ) + "\n"
        )  # fmt: skip
        async with open_runtime(parsed, database_url) as rt:
            runner = EvaluationRunner(
                config=parsed,
                evaluation=evaluation,
                evaluators=build_evaluators(parsed, evaluation, rt.engine),
                engine=rt.engine,
                database=rt.database,
                recorder=rt.writer,
            )
            summary = await runner.run(read_jsonl(data), "v1", concurrency=2)
        sent = [r.body for r in fake.requests if r.body.get("model") == "score-true"]
    scores = {s.name: s for s in summary.evaluators}
    assert (scores["exact"].n, scores["exact"].mean) == (2, 1.0)
    assert (scores["valid_haiku"].n, scores["valid_haiku"].mean, scores["valid_haiku"].passed) == (2, 1.0, True)
    assert (scores["metaphors"].n, scores["metaphors"].mean) == (2, 3.0)
    # The active variant judged, told the instructions as written, the input, the output and the reference.
    assert len(sent) == 2
    system, user = sent[0]["messages"][0], sent[0]["messages"][-1]
    assert system == {"role": "system", "content": "Judge the haiku. {{ not a template }}\n"}
    assert "# Input" in user["content"] and "# Generated Output\n\necho: " in user["content"]
    assert "# Reference Output" in user["content"]
    with psycopg.connect(database_url) as conn:
        judged = conn.execute(
            "SELECT count(*) FROM json_inferences WHERE function_name = %s",
            (judge_function_name("haiku_eval", "valid_haiku"),),
        ).fetchone()
    assert judged == (2,)


def test_several_judge_variants_need_one_active(tmp_path: Path) -> None:
    text = """
[functions.f]
type = "chat"
[functions.f.variants.a]
type = "chat_completion"
model = "dummy::echo"
[evaluations.e]
type = "static"
function_name = "f"
[evaluations.e.evaluators.j]
type = "llm_judge"
output_type = "boolean"
optimize = "max"
[evaluations.e.evaluators.j.variants.x]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"
[evaluations.e.evaluators.j.variants.y]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"
"""
    with pytest.raises(ConfigError, match="mark exactly one judge variant active"):
        parse(text, base_dir=tmp_path)
