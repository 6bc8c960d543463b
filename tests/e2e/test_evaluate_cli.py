"""`lsd evaluate` as a real process: JSON and text summaries, a malformed line reported and skipped, exit 1
below a cutoff (the CI gate), usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.support.configs import write_answer_schema
from tests.support.gateway import run_lsd

CONFIG = """
[gateway.observability]
spool_dir = "@TMP@/spool"

[functions.answer]
type = "json"
output_schema = "@TMP@/answer.json"
[functions.answer.variants.a]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"

[functions.judge]
type = "chat"
[functions.judge.variants.dummy]
type = "chat_completion"
model = "dummy::echo"

[evaluations.qa]
function_name = "answer"
[evaluations.qa.evaluators.exact]
type = "exact_match"
cutoff = 0.5
[evaluations.qa.evaluators.judge]
type = "llm_judge"
function_name = "judge"
variant_name = "dummy"
prompt_path = "@TMP@/judge.txt"
output_type = "float"
optimize = "max"

[evaluations.strict]
function_name = "answer"
[evaluations.strict.evaluators.exact]
type = "exact_match"
cutoff = 0.9
"""


def line(text: str, answer: str) -> str:
    return json.dumps({"input": {"messages": [{"role": "user", "content": text}]}, "output": {"answer": answer}})


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    write_answer_schema(tmp_path)
    # A chat judge built on `dummy::echo` answers "echo: <prompt>", never a bare number: each of its judgements
    # is a failure, counted as such, and the run goes on.
    (tmp_path / "judge.txt").write_text("{{ output.answer | length }}")
    config = tmp_path / "lsd.toml"
    config.write_text(CONFIG.replace("@TMP@", str(tmp_path)))
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text("\n".join([line("a", "a"), line("bb", "bb"), "not json", line("ccc", "x")]) + "\n")
    return config, dataset


def evaluate(config: Path, dataset: Path, database_url: str, *args: str) -> tuple[int, str, str]:
    result = run_lsd(
        "evaluate", "--config", str(config), "--dataset", str(dataset), *args, env={"LSD_DATABASE_URL": database_url}
    )
    return result.returncode, result.stdout, result.stderr


def test_json_summary_and_a_skipped_line(files: tuple[Path, Path], database_url: str) -> None:
    config, dataset = files
    code, out, err = evaluate(config, dataset, database_url, "--evaluation", "qa", "--variant", "a", "--format", "json")
    assert code == 0, err
    assert f"{dataset}:3: malformed JSON" in err
    summary = json.loads(out)
    exact, judge = summary["evaluators"]
    assert (summary["datapoints"], len(summary["skipped"])) == (3, 1)
    assert (exact["name"], exact["n"], exact["mean"], exact["passed"]) == ("exact", 3, pytest.approx(2 / 3), True)
    assert (judge["n"], judge["failures"]) == (0, 3)
    with psycopg.connect(database_url) as conn:
        status = conn.execute("SELECT status FROM inference_evaluation_runs WHERE id = %s", (summary["run_id"],))
        assert status.fetchall() == [("completed",)]
        count = conn.execute(
            "SELECT count(*) FROM boolean_metric_feedback WHERE tags->>'lsd::evaluation_run_id' = %s",
            (summary["run_id"],),
        ).fetchone()
        assert count == (3,)  # rows flushed before the process exited


def test_below_cutoff_exits_1_with_a_text_table(files: tuple[Path, Path], database_url: str) -> None:
    config, dataset = files
    code, out, err = evaluate(config, dataset, database_url, "--evaluation", "strict", "--variant", "a")
    assert code == 1, err
    assert "below cutoff: exact" in err
    assert "exact" in out and "FAIL" in out and "0.667" in out and ">= 0.9" in out
    assert "datapoints: 3 run" in out and "wall time:" in out

    code, out, err = evaluate(
        config, dataset, database_url, "--evaluation", "strict", "--variant", "a", "--max-datapoints", "2"
    )
    assert code == 0, err  # the first two lines match their references
    assert "pass" in out


def test_usage_errors_exit_2(files: tuple[Path, Path], database_url: str, tmp_path: Path) -> None:
    config, dataset = files
    code, _, err = evaluate(config, dataset, database_url, "--evaluation", "nope", "--variant", "a")
    assert code == 2 and "unknown evaluation 'nope' (configured: qa, strict)" in err
    code, _, err = evaluate(config, dataset, database_url, "--evaluation", "qa", "--variant", "z")
    assert code == 2 and "unknown variant 'z'" in err
    code, _, err = evaluate(config, tmp_path / "missing.jsonl", database_url, "--evaluation", "qa", "--variant", "a")
    assert code == 2 and "missing.jsonl: cannot read dataset" in err
    code, _, err = evaluate(config, dataset, "", "--evaluation", "qa", "--variant", "a")
    assert code == 2 and "LSD_DATABASE_URL" in err
