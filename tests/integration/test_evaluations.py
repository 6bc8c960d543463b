"""Evaluations against a real PostgreSQL: a run on the dummy provider (exact_match, json_schema, regex and two
LLM judges backed by a dummy model), its summary checked against the rows, human feedback reused by a later
run, the run endpoints, and stored inferences (with demonstrations) as a dataset.

The judges are dummy `json` models: they answer {"answer": "<prompt>"}, so a judge's prompt template that
renders to the verdict ("{{ output.answer }}") makes the judge answer it; the evaluator reads `answer`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from lsd.config import parse
from lsd.config.model import Config
from lsd.errors import ConfigError
from lsd.evaluations.datasets import Dataset, from_inferences, parse_inference_filter, read_jsonl
from lsd.evaluations.evaluators import build_evaluators
from lsd.evaluations.runner import EvaluationRunner
from lsd.evaluations.summary import RunSummary
from lsd.runtime import open_runtime
from tests.support.configs import write_answer_schema
from tests.support.gateway import ROOT, in_process_gateway

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

[functions.answer.variants.broken]
type = "chat_completion"
model = "dummy::error"
json_mode = "strict"

[functions.judge]
type = "json"
output_schema = "@TMP@/answer.json"
[functions.judge.variants.dummy]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"

[evaluations.qa]
function_name = "answer"

[evaluations.qa.evaluators.exact]
type = "exact_match"

[evaluations.qa.evaluators.valid]
type = "json_schema"

[evaluations.qa.evaluators.says_yes]
type = "regex"
pattern = "yes"

[evaluations.qa.evaluators.judge]
type = "llm_judge"
function_name = "judge"
variant_name = "dummy"
prompt = "{{ output.answer }}"
output_field = "answer"
output_type = "boolean"
optimize = "max"
cutoff = 0.5

[evaluations.qa.evaluators.length]
type = "llm_judge"
function_name = "judge"
variant_name = "dummy"
prompt = "{{ output.answer | length }}"
output_field = "answer"
output_type = "float"
optimize = "min"
"""


def message(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


DATASET = [
    json.dumps({"id": "d-yes", "input": message("yes"), "output": {"answer": "yes"}}),
    json.dumps({"id": "d-no", "input": message("no"), "output": {"answer": "yes"}, "tags": {"topic": "t"}}),
    '{"input": ',
    json.dumps({"input": message("maybe")}),
    json.dumps({"input": {"messages": [{"role": "robot", "content": "x"}]}}),
]


@pytest.fixture
def config_text(tmp_path: Path) -> str:
    write_answer_schema(tmp_path)
    return CONFIG.replace("@TMP@", str(tmp_path))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(DATASET) + "\n")
    return path


async def evaluate(config: Config, database_url: str, data: Dataset | Path, variant: str = "a") -> RunSummary:
    async with open_runtime(config, database_url) as rt:
        if isinstance(data, Path):
            data = read_jsonl(data)
        runner = EvaluationRunner(
            config=config,
            evaluation=config.evaluations["qa"],
            evaluators=build_evaluators(config, config.evaluations["qa"], rt.engine),
            engine=rt.engine,
            database=rt.database,
            recorder=rt.writer,
        )
        return await runner.run(data, variant, concurrency=2)
    # leaving the runtime flushed the writer: every row is committed


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def wilson(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def by_name(summary: RunSummary) -> dict[str, Any]:
    return {e.name: e for e in summary.evaluators}


def test_malformed_lines_are_reported_with_file_and_line_and_skipped(dataset: Path) -> None:
    data = read_jsonl(dataset)
    assert [d.id for d in data.datapoints][:2] == ["d-yes", "d-no"]
    assert len(data.datapoints) == 3
    assert len(data.problems) == 2
    assert data.problems[0].startswith(f"{dataset}:3: malformed JSON")
    assert data.problems[1].startswith(f"{dataset}:5: input.messages[0].role")
    assert read_jsonl(dataset, max_datapoints=1).datapoints[0].id == "d-yes"
    # a content-derived id is stable from run to run
    assert read_jsonl(dataset).datapoints[2].id == data.datapoints[2].id


def test_config_errors_name_the_key_path(config_text: str) -> None:
    bad = config_text.replace('pattern = "yes"', 'pattern = "("').replace(
        'variant_name = "dummy"', 'variant_name = "x"'
    )
    bad += '\n[evaluations.qa.evaluators.exact2]\ntype = "exact_match"\noptimize = "min"\n'
    with pytest.raises(ConfigError) as caught:
        parse(bad, base_dir=ROOT)
    errors = "\n".join(caught.value.errors)
    assert "evaluations.qa.evaluators.says_yes.pattern: invalid regular expression" in errors
    assert "evaluations.qa.evaluators.judge.variant_name: unknown variant 'x'" in errors
    assert "evaluations.qa.evaluators.exact2.optimize: unknown key" in errors


async def test_run_summary_matches_the_rows(config_text: str, dataset: Path, database_url: str) -> None:
    config = parse(config_text, base_dir=ROOT)
    summary = await evaluate(config, database_url, dataset)
    run = summary.run_id
    assert summary.datapoints == 3 and len(summary.skipped) == 2 and summary.inference_failures == 0
    s = by_name(summary)

    # boolean verdicts recorded as feedback on the evaluated inferences, tagged with run, datapoint, evaluator
    boolean = rows(
        database_url,
        "SELECT tags->>'lsd::evaluator', count(*), avg(value::int) FROM boolean_metric_feedback "
        "WHERE tags->>'lsd::evaluation_run_id' = %s GROUP BY 1",
        run,
    )
    assert {name: (n, float(mean)) for name, n, mean in boolean} == {
        "exact": (2, 0.5),
        "valid": (3, 1.0),
        "says_yes": (3, 1 / 3),
        "judge": (2, 0.5),
    }
    for name, n, mean in boolean:
        assert (s[name].n, s[name].mean) == (n, pytest.approx(float(mean)))
        low, high = wilson(float(mean), n)
        assert (s[name].ci_low, s[name].ci_high) == (pytest.approx(max(0, low)), pytest.approx(min(1, high)))
    assert (s["exact"].failures, s["judge"].failures, s["valid"].failures) == (1, 1, 0)
    assert s["judge"].passed is True and summary.below_cutoff == []

    floats = [
        v
        for (v,) in rows(
            database_url, "SELECT value FROM float_metric_feedback WHERE tags->>'lsd::evaluation_run_id' = %s", run
        )
    ]
    assert sorted(floats) == [2.0, 3.0, 5.0]  # len("no"), len("yes"), len("maybe")
    mean = sum(floats) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in floats) / 2)
    assert s["length"].mean == pytest.approx(mean)
    assert s["length"].ci_high == pytest.approx(mean + 1.959963984540054 * sd / math.sqrt(3))

    metrics = {m for (m,) in rows(database_url, "SELECT DISTINCT metric_name FROM boolean_metric_feedback")}
    assert "lsd::evaluation::qa::evaluator::exact" in metrics
    tags = rows(database_url, "SELECT tags FROM boolean_metric_feedback WHERE tags->>'lsd::evaluator' = 'judge'")
    assert all("lsd::evaluator_inference_id" in t and t["lsd::datapoint_id"] for (t,) in tags)

    # the evaluated inferences and the judges' inferences, all tagged with the run
    inferences = rows(
        database_url,
        "SELECT function_name, count(*) FROM json_inferences WHERE tags->>'lsd::evaluation_run_id' = %s GROUP BY 1",
        run,
    )
    assert dict(inferences) == {"answer": 3, "judge": 6}
    topic = rows(database_url, "SELECT tags->>'topic' FROM json_inferences WHERE tags->>'lsd::datapoint_id' = 'd-no'")
    assert topic[0][0] == "t"

    # one result row per datapoint and evaluator; the run row holds the summary
    assert rows(
        database_url, "SELECT count(*) FROM inference_evaluation_results WHERE evaluation_run_id = %s", run
    ) == [(15,)]
    status, stored = rows(database_url, "SELECT status, summary FROM inference_evaluation_runs WHERE id = %s", run)[0]
    assert status == "completed"
    assert stored["evaluators"][0]["name"] == "exact" and stored["evaluators"][0]["mean"] == 0.5
    assert stored["cost"] is None  # the dummy provider reports no cost


async def test_failed_inferences_are_failures_of_every_evaluator(
    config_text: str, dataset: Path, database_url: str
) -> None:
    config = parse(config_text, base_dir=ROOT)
    summary = await evaluate(config, database_url, dataset, variant="broken")
    assert summary.inference_failures == 3
    assert {(e.n, e.failures) for e in summary.evaluators} == {(0, 3)}
    assert summary.below_cutoff == ["judge"]  # no values cannot meet a cutoff
    results = rows(
        database_url,
        "SELECT inference_id, value, error FROM inference_evaluation_results WHERE evaluation_run_id = %s",
        summary.run_id,
    )
    assert len(results) == 15
    assert all(i is None and v is None and e.startswith("inference failed: ") for i, v, e in results)
    feedback = rows(database_url, "SELECT count(*) FROM boolean_metric_feedback")
    assert feedback == [(0,)]


@pytest.fixture
async def client(config_text: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_gateway(config_text, database_url) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def test_a_later_run_reuses_human_feedback_instead_of_the_judge(
    config_text: str, dataset: Path, database_url: str, client: httpx.AsyncClient
) -> None:
    config = parse(config_text, base_dir=ROOT)
    first = await evaluate(config, database_url, dataset)
    assert by_name(first)["judge"].mean == 0.5  # the judge said yes to d-yes and no to d-no

    body = {"evaluation_run_id": first.run_id, "datapoint_id": "d-yes", "evaluator_name": "judge", "value": False}
    r = await client.post("/v1/evaluations/human_feedback", json={**body, "tags": {"reviewer": "ann"}})
    assert r.status_code == 200, r.text
    feedback_id = r.json()["feedback_id"]
    stored = rows(
        database_url,
        "SELECT value, output, metric_name, datapoint_id, evaluator_name, tags->>'reviewer' "
        "FROM inference_evaluation_human_feedback WHERE id = %s",
        feedback_id,
    )
    assert stored == [
        (
            False,
            {"raw": '{"answer":"yes"}', "parsed": {"answer": "yes"}},
            "lsd::evaluation::qa::evaluator::judge",
            "d-yes",
            "judge",
            "ann",
        )
    ]

    for bad, status, field in [
        ({**body, "value": "false"}, 400, "value"),
        ({**body, "evaluator_name": "exact"}, 400, "evaluator_name"),
        ({**body, "evaluator_name": "nope"}, 404, "evaluator_name"),
        ({**body, "datapoint_id": "nope"}, 404, "datapoint_id"),
        ({**body, "evaluation_run_id": "0190a0a0-0000-7000-8000-000000000000"}, 404, "evaluation_run_id"),
        ({**body, "extra": 1}, 400, "extra"),
        ({**body, "evaluator_name": "length", "value": "x"}, 400, "value"),
    ]:
        r = await client.post("/v1/evaluations/human_feedback", content=json.dumps(bad))
        assert (r.status_code, r.json().get("field")) == (status, field), (bad, r.text)

    second = await evaluate(config, database_url, dataset)
    judge = by_name(second)["judge"]
    assert (judge.human, judge.n, judge.mean) == (1, 2, 0.0)  # the person's "no" for d-yes, the judge's for d-no
    assert second.below_cutoff == ["judge"]
    judged = rows(
        database_url,
        "SELECT tags->>'lsd::datapoint_id' FROM json_inferences WHERE function_name = 'judge' "
        "AND tags->>'lsd::evaluation_run_id' = %s AND tags->>'lsd::evaluator' = 'judge'",
        second.run_id,
    )
    assert len(judged) == 2 and "d-yes" not in {d for (d,) in judged}  # the judge was not asked about d-yes
    human_rows = rows(
        database_url,
        "SELECT value FROM boolean_metric_feedback WHERE tags->>'lsd::evaluation_run_id' = %s "
        "AND tags->>'lsd::datapoint_id' = 'd-yes' AND tags->>'lsd::evaluator' = 'judge'",
        second.run_id,
    )
    assert human_rows == [(False,)]

    # the run endpoints
    runs = (await client.get("/v1/evaluations/runs", params={"evaluation_name": "qa"})).json()["runs"]
    assert [r["id"] for r in runs] == [second.run_id, first.run_id]
    assert runs[0]["status"] == "completed" and runs[0]["summary"]["below_cutoff"] == ["judge"]
    assert len((await client.get("/v1/evaluations/runs", params={"limit": "1"})).json()["runs"]) == 1
    detail = (await client.get(f"/v1/evaluations/runs/{second.run_id}")).json()
    assert detail["run"]["variant_name"] == "a" and detail["run"]["config"]["evaluators"]["judge"]["cutoff"] == 0.5
    points = {p["datapoint_id"]: p for p in detail["datapoints"]}
    assert len(points) == 3
    assert points["d-yes"]["results"]["judge"]["source"] == "human"
    assert points["d-yes"]["results"]["judge"]["value"] is False
    assert points["d-no"]["results"]["judge"]["source"] == "evaluator"
    assert points["d-no"]["reference"] == {"answer": "yes"}
    maybe = next(p for p in points.values() if p["reference"] is None)
    assert maybe["results"]["exact"]["error"] == "the datapoint has no reference output"
    assert "not a boolean" in maybe["results"]["judge"]["error"]
    assert (await client.get("/v1/evaluations/runs/0190a0a0-0000-7000-8000-000000000000")).status_code == 404
    assert (await client.get("/v1/evaluations/runs/not-a-uuid")).status_code == 400
    assert (await client.get("/v1/evaluations/runs", params={"limit": "0"})).status_code == 400


async def test_stored_inferences_as_a_dataset_with_demonstrations_as_references(
    config_text: str, database_url: str, client: httpx.AsyncClient
) -> None:
    ids = []
    for text in ("yes", "no", "other"):
        body = {"function_name": "answer", "input": message(text), "tags": {"set": "golden"}}
        r = await client.post("/inference", json=body)
        assert r.status_code == 200, r.text
        ids.append(r.json()["inference_id"])
    await client.post("/inference", json={"function_name": "answer", "input": message("untagged")})
    r = await client.post(
        "/feedback", json={"metric_name": "demonstration", "inference_id": ids[1], "value": {"answer": "no"}}
    )
    assert r.status_code == 200, r.text
    for _ in range(100):  # the gateway's writer flushes every 100 ms
        if rows(database_url, "SELECT count(*) FROM demonstration_feedback") == [(1,)]:
            break
        await asyncio.sleep(0.05)

    config = parse(config_text, base_dir=ROOT)
    async with open_runtime(config, database_url) as rt:
        function = config.functions["answer"]
        data = await from_inferences(rt.database, function, parse_inference_filter({"tags": {"set": "golden"}}))
    assert sorted(d.id for d in data.datapoints) == sorted(ids)
    assert {d.id: d.reference for d in data.datapoints if d.has_reference} == {ids[1]: {"answer": "no"}}

    summary = await evaluate(config, database_url, data)
    exact = by_name(summary)["exact"]
    assert (exact.n, exact.mean, exact.failures) == (1, 1.0, 2)  # only the demonstrated inference has a reference
    # The run's own inferences carry the datapoints' tags (set=golden): the same selection again leaves them out.
    async with open_runtime(config, database_url) as rt:
        again = await from_inferences(rt.database, function, parse_inference_filter({"tags": {"set": "golden"}}))
    assert sorted(d.id for d in again.datapoints) == sorted(ids)
