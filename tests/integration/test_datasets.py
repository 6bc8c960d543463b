"""The Datasets API on PostgreSQL through the `tensorzero` client unchanged: create (chat and json), list, get,
update (a new id, the old one staled), rename, delete, create from inferences (output from the inference, its
demonstration, or none); bad bodies named by field; `lsd datasets export` (jsonl, parquet read back); `lsd evaluate
--dataset-name` over a stored dataset."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest
from tensorzero import AsyncTensorZeroGateway
from tensorzero.generated_types import (
    ContentBlockChatOutputText,
    CreateDatapointRequestChat,
    CreateDatapointRequestJson,
    CreateDatapointsFromInferenceRequestParamsInferenceIds,
    CreateDatapointsFromInferenceRequestParamsInferenceQuery,
    DatapointChat,
    DatapointJson,
    JsonDatapointOutputUpdate,
    ListDatapointsRequest,
    TagDatapointFilter,
    UpdateChatDatapointRequest,
    UpdateDatapointMetadataRequest,
    UpdateJsonDatapointRequest,
)

from tests.support.configs import write_answer_schema
from tests.support.gateway import in_process_gateway, run_lsd

CONFIG = """
[gateway.observability]
async_writes = false

[tools.weather]
description = "Weather"
parameters = "@TMP@/weather.json"

[functions.chat]
type = "chat"
tools = ["weather"]
[functions.chat.variants.echo]
type = "chat_completion"
model = "dummy::echo"

[functions.answer]
type = "json"
output_schema = "@TMP@/answer.json"
[functions.answer.variants.a]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"

[evaluations.qa]
function_name = "answer"
[evaluations.qa.evaluators.exact]
type = "exact_match"
"""


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    write_answer_schema(tmp_path)
    (tmp_path / "weather.json").write_text(json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}))
    path = tmp_path / "lsd.toml"
    path.write_text(CONFIG.replace("@TMP@", str(tmp_path)))
    return path


@pytest.fixture
def config_text(config_path: Path) -> str:
    return config_path.read_text()


@pytest.fixture
async def gateway(config_text: str, database_url: str) -> AsyncIterator[str]:
    async with in_process_gateway(config_text, database_url) as url:
        yield url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[AsyncTensorZeroGateway]:
    built = await AsyncTensorZeroGateway.build_http(gateway_url=gateway)
    assert isinstance(built, AsyncTensorZeroGateway)
    try:
        yield built
    finally:
        await built.close()


async def create_golden(client: AsyncTensorZeroGateway) -> list[str]:
    created = await client.create_datapoints(
        dataset_name="golden",
        requests=[
            CreateDatapointRequestChat(
                function_name="chat",
                input=user("weather in Paris?"),
                output=[ContentBlockChatOutputText(text="sunny")],
                tags={"topic": "weather"},
                name="paris",
                allowed_tools=["weather"],
                tool_choice="auto",
            ),
            CreateDatapointRequestJson(
                function_name="answer", input=user("yes"), output=JsonDatapointOutputUpdate(raw='{"answer": "yes"}')
            ),
            CreateDatapointRequestJson(  # kept on purpose although it misses the schema: parsed is null
                function_name="answer", input=user("no"), output=JsonDatapointOutputUpdate(raw='{"other": 1}')
            ),
        ],
    )
    return [str(i) for i in created.ids]


async def test_create_list_get_update_rename_delete(client: AsyncTensorZeroGateway, database_url: str) -> None:
    chat_id, yes_id, bad_id = await create_golden(client)
    assert all(UUID(i).version == 7 for i in (chat_id, yes_id, bad_id))

    listed = (await client.list_datapoints(dataset_name="golden", request=ListDatapointsRequest())).datapoints
    assert [d.id for d in listed] == [bad_id, yes_id, chat_id]  # newest first
    chat = next(d for d in listed if d.id == chat_id)
    assert isinstance(chat, DatapointChat)
    assert chat.dataset_name == "golden" and chat.name == "paris" and chat.tags == {"topic": "weather"}
    assert chat.allowed_tools == ["weather"] and chat.tool_choice == "auto" and not chat.is_deleted
    assert chat.output is not None and chat.output[0].text == "sunny"  # type: ignore[union-attr]
    yes = next(d for d in listed if d.id == yes_id)
    assert isinstance(yes, DatapointJson)
    assert yes.output is not None and yes.output.parsed == {"answer": "yes"}
    assert yes.output_schema == {"type": "object", "required": ["answer"]}  # the function's, when none is given
    bad = next(d for d in listed if d.id == bad_id)
    assert isinstance(bad, DatapointJson) and bad.output is not None
    assert bad.output.raw == '{"other": 1}' and bad.output.parsed is None

    only_json = await client.list_datapoints(
        dataset_name="golden", request=ListDatapointsRequest(function_name="answer", limit=1, offset=1)
    )
    assert [d.id for d in only_json.datapoints] == [yes_id]
    tagged = await client.list_datapoints(
        dataset_name="golden",
        request=ListDatapointsRequest(filter=TagDatapointFilter(key="topic", value="weather", comparison_operator="=")),
    )
    assert [d.id for d in tagged.datapoints] == [chat_id]
    assert (await client.list_datapoints(dataset_name="other", request=ListDatapointsRequest())).datapoints == []

    got = await client.get_datapoints(dataset_name="golden", ids=[yes_id, chat_id, str(UUID(int=7))])
    assert [d.id for d in got.datapoints] == [yes_id, chat_id]  # in the order asked; unknown ids left out

    # an output override and new tags: a new datapoint replaces the old one, which stays readable as stale
    updated = await client.update_datapoints(
        dataset_name="golden",
        requests=[
            UpdateChatDatapointRequest(
                id=chat_id, output=[ContentBlockChatOutputText(text="rainy")], tags={"topic": "rain"}, name="paris"
            ),
            UpdateJsonDatapointRequest(id=bad_id, output=JsonDatapointOutputUpdate(raw='{"answer": "no"}')),
        ],
    )
    new_chat, new_bad = (str(i) for i in updated.ids)
    assert new_chat != chat_id and new_bad != bad_id
    old, new = (await client.get_datapoints(dataset_name="golden", ids=[chat_id, new_chat])).datapoints
    assert old.staled_at is not None and new.staled_at is None
    assert new.output[0].text == "rainy" and new.tags == {"topic": "rain"} and new.name == "paris"  # type: ignore[index,union-attr]
    # TensorZero's rule: null clears a tool parameter, and the client sends null for the ones it is not given
    assert isinstance(new, DatapointChat) and new.allowed_tools is None
    fixed = (await client.get_datapoints(dataset_name="golden", ids=[new_bad])).datapoints[0]
    assert isinstance(fixed, DatapointJson) and fixed.output is not None and fixed.output.parsed == {"answer": "no"}
    listed_ids = {
        d.id for d in (await client.list_datapoints(dataset_name="golden", request=ListDatapointsRequest())).datapoints
    }
    assert listed_ids == {new_chat, yes_id, new_bad}

    renamed = await client.update_datapoints_metadata(
        dataset_name="golden", requests=[UpdateDatapointMetadataRequest(id=yes_id, name="the yes")]
    )
    assert [str(i) for i in renamed.ids] == [yes_id]  # metadata keeps the id
    assert (await client.get_datapoints(dataset_name="golden", ids=[yes_id])).datapoints[0].name == "the yes"

    deleted = await client.delete_datapoints(dataset_name="golden", ids=[yes_id, str(UUID(int=7))])
    assert deleted.num_deleted_datapoints == 1
    assert (await client.delete_datapoints(dataset_name="golden", ids=[yes_id])).num_deleted_datapoints == 0
    assert (await client.delete_dataset(dataset_name="golden")).num_deleted_datapoints == 2
    assert (await client.list_datapoints(dataset_name="golden", request=ListDatapointsRequest())).datapoints == []

    with psycopg.connect(database_url) as conn:  # plain SQL over the view
        counts = conn.execute(
            "SELECT type, count(*) FILTER (WHERE staled_at IS NULL), count(*) FILTER (WHERE is_deleted) "
            "FROM datapoints WHERE dataset_name = 'golden' GROUP BY type ORDER BY type"
        ).fetchall()
    assert counts == [("chat", 0, 1), ("json", 0, 2)]


async def test_create_from_inferences_with_each_output_source(client: AsyncTensorZeroGateway) -> None:
    chat = await client.inference(function_name="chat", input=user("hello"))
    answer = await client.inference(function_name="answer", input=user("maybe"), tags={"set": "golden"})
    await client.feedback(metric_name="demonstration", inference_id=answer.inference_id, value={"answer": "sure"})

    made = await client.create_datapoints_from_inferences(
        dataset_name="mined",
        params=CreateDatapointsFromInferenceRequestParamsInferenceIds(
            inference_ids=[str(chat.inference_id), str(answer.inference_id)]
        ),
    )
    from_chat, from_answer = (
        await client.get_datapoints(dataset_name="mined", ids=[str(i) for i in made.ids])
    ).datapoints
    assert isinstance(from_chat, DatapointChat) and from_chat.source_inference_id == str(chat.inference_id)
    assert from_chat.output[0].text == "echo: hello"  # type: ignore[index,union-attr]
    assert from_chat.episode_id == str(chat.episode_id) and from_chat.allowed_tools == ["weather"]
    assert from_chat.input.messages[0].content[0].text == "hello"  # type: ignore[union-attr]
    assert isinstance(from_answer, DatapointJson) and from_answer.output is not None
    assert from_answer.output.parsed == {"answer": "maybe"} and from_answer.tags == {"set": "golden"}

    demonstrated = await client.create_datapoints_from_inferences(
        dataset_name="mined",
        params=CreateDatapointsFromInferenceRequestParamsInferenceIds(inference_ids=[str(answer.inference_id)]),
        output_source="demonstration",
    )
    override = (await client.get_datapoints(dataset_name="mined", ids=[str(demonstrated.ids[0])])).datapoints[0]
    assert isinstance(override, DatapointJson) and override.output is not None
    assert override.output.parsed == {"answer": "sure"} and json.loads(override.output.raw or "") == {"answer": "sure"}

    queried = await client.create_datapoints_from_inferences(
        dataset_name="inputs-only",
        params=CreateDatapointsFromInferenceRequestParamsInferenceQuery(
            function_name="answer", output_source="none", limit=10
        ),
    )
    assert len(queried.ids) == 1
    bare = (await client.get_datapoints(dataset_name="inputs-only", ids=[str(queried.ids[0])])).datapoints[0]
    assert bare.output is None and bare.source_inference_id == str(answer.inference_id)


async def test_bad_bodies_are_400s_naming_the_field(gateway: str, client: AsyncTensorZeroGateway) -> None:
    chat_id = (await create_golden(client))[0]
    cases: list[tuple[str, str, Any, str]] = [
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "chat", "input": user("x")}]},
            "datapoints[0].function_name",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "chat", "function_name": "nope", "input": user("x")}]},
            "datapoints[0].function_name",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "json", "function_name": "chat", "input": user("x")}]},
            "datapoints[0].function_name",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {
                "datapoints": [
                    {"type": "chat", "function_name": "chat", "input": user("x"), "output": [{"type": "txt"}]}
                ]
            },
            "datapoints[0].output[0].type",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {
                "datapoints": [
                    {
                        "type": "chat",
                        "function_name": "chat",
                        "input": {"messages": [{"role": "robot", "content": "x"}]},
                    }
                ]
            },
            "datapoints[0].input.messages[0].role",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "chat", "function_name": "chat", "input": user("x"), "allowed_tools": ["nope"]}]},
            "datapoints[0].allowed_tools[0]",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "json", "function_name": "answer", "input": user("x"), "tags": {"a": 1}}]},
            "datapoints[0].tags.a",
        ),
        (
            "POST",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "json", "function_name": "answer", "input": user("x"), "colour": 1}]},
            "datapoints[0].colour",
        ),
        ("POST", "/v1/datasets/golden/list_datapoints", {"limit": "ten"}, "limit"),
        (
            "POST",
            "/v1/datasets/golden/list_datapoints",
            {"filter": {"type": "boolean_metric", "metric_name": "m", "value": True}},
            "filter.type",
        ),
        ("POST", "/v1/datasets/golden/get_datapoints", {"ids": ["not-a-uuid"]}, "ids[0]"),
        (
            "PATCH",
            "/v1/datasets/golden/datapoints",
            {"datapoints": [{"type": "json", "id": chat_id}]},
            "datapoints[0].type",
        ),
        (
            "POST",
            "/v1/datasets/golden/from_inferences",
            {"type": "inference_ids", "inference_ids": [chat_id], "output_source": "gold"},
            "output_source",
        ),
        ("POST", "/v1/datasets/bad%20name/list_datapoints", {}, "dataset_name"),
    ]
    async with httpx.AsyncClient(base_url=gateway) as http:
        for method, path, body, field in cases:
            response = await http.request(method, path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            assert response.json()["field"] == field, (body, response.json())
            assert response.json()["error"].startswith(f"{field}: ")
        missing = await http.patch(
            "/v1/datasets/golden/datapoints",
            json={"datapoints": [{"type": "chat", "id": str(UUID(int=7)), "tags": {}}]},
        )
        assert missing.status_code == 404 and missing.json()["field"] == "datapoints[0].id"
        unknown = await http.post(
            "/v1/datasets/golden/from_inferences", json={"type": "inference_ids", "inference_ids": [chat_id]}
        )
        assert unknown.status_code == 404 and unknown.json()["field"] == "inference_ids[0]"
        # a field left out of the body keeps its value (the client cannot leave one out: it sends null)
        kept = await http.patch(
            "/v1/datasets/golden/datapoints", json={"datapoints": [{"type": "chat", "id": chat_id, "tags": {"k": "v"}}]}
        )
        assert kept.status_code == 200, kept.text
        got = await http.post("/v1/datasets/golden/get_datapoints", json={"ids": kept.json()["ids"]})
        successor = got.json()["datapoints"][0]
        assert successor["tags"] == {"k": "v"} and successor["output"] == [{"type": "text", "text": "sunny"}]
        assert successor["allowed_tools"] == ["weather"] and successor["name"] == "paris"
        # nothing half-written: the dataset still holds its three datapoints
        listed = await http.post("/v1/datasets/golden/list_datapoints", json={})
        assert len(listed.json()["datapoints"]) == 3


async def test_export_jsonl_and_parquet_and_evaluate_a_stored_dataset(
    client: AsyncTensorZeroGateway, config_path: Path, database_url: str, tmp_path: Path
) -> None:
    chat_id, yes_id, bad_id = await create_golden(client)
    env = {"LSD_DATABASE_URL": database_url}

    jsonl = tmp_path / "golden.jsonl"
    done = run_lsd("datasets", "export", "golden", "--format", "jsonl", "--output", str(jsonl), env=env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [d["id"] for d in lines] == [chat_id, yes_id, bad_id]  # oldest first
    assert lines[1]["output"] == {"raw": '{"answer": "yes"}', "parsed": {"answer": "yes"}}
    assert lines[0]["input"] == user("weather in Paris?") and lines[0]["tags"] == {"topic": "weather"}

    parquet = tmp_path / "golden.parquet"
    done = run_lsd("datasets", "export", "golden", "--format", "parquet", "--output", str(parquet), env=env)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(parquet).to_pylist()
    assert [r["id"] for r in table] == [chat_id, yes_id, bad_id]
    assert [r["type"] for r in table] == ["chat", "json", "json"]
    assert json.loads(table[1]["output"])["parsed"] == {"answer": "yes"}
    assert table[0]["tags"] == [("topic", "weather")] and table[0]["created_at"].tzinfo is not None

    empty = run_lsd("datasets", "export", "nothing", env=env)
    assert empty.returncode == 2 and "no datapoints" in empty.stderr

    # the json datapoints of the stored dataset, scored against their stored outputs
    evaluated = run_lsd(
        "evaluate", "--config", str(config_path), "--evaluation", "qa", "--variant", "a",
        "--dataset-name", "golden", "--format", "json", env=env,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout)
    assert summary["datapoints"] == 2
    exact = summary["evaluators"][0]
    assert exact["name"] == "exact" and exact["n"] == 2 and exact["mean"] == 0.5  # "yes" matches, {"other": 1} not
    with psycopg.connect(database_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT datapoint_id FROM inference_evaluation_results").fetchall()}
    assert ids == {yes_id, bad_id}
