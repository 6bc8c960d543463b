"""Workflow evaluation runs and `internal_dynamic_variant_config`, through the tensorzero client (HTTP mode) against
a gateway on a real socket and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from tensorzero import AsyncTensorZeroGateway, TensorZeroError

from lsd.ids import is_workflow_episode, workflow_episode_id
from tests.support.configs import ECHO_MODEL
from tests.support.gateway import in_process_gateway

# Unpinned, `chat` always runs `a` (weight 0 takes `b` out of sampling): only a run's pin makes it run `b`.
CONFIG = (
    """
[gateway.observability]
async_writes = false

[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "echo"
weight = 1
[functions.chat.variants.b]
type = "chat_completion"
model = "echo"
weight = 0

[metrics.task_success]
type = "boolean"
optimize = "max"
level = "episode"

[metrics.accepted]
type = "boolean"
optimize = "max"
level = "inference"
"""
    + ECHO_MODEL
)

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[str]:
    async with in_process_gateway(CONFIG, database_url) as base_url:
        yield base_url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[AsyncTensorZeroGateway]:
    built = await AsyncTensorZeroGateway.build_http(gateway_url=gateway)
    try:
        yield built
    finally:
        await built.close()


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


async def test_a_run_pins_variants_and_ties_inferences_and_feedback_to_it(
    client: AsyncTensorZeroGateway, gateway: str, database_url: str
) -> None:
    run = await client.workflow_evaluation_run(
        variants={"chat": "b"}, tags={"team": "search"}, project_name="rag", display_name="try b"
    )
    episode = await client.workflow_evaluation_run_episode(run_id=run.run_id, task_name="q1", tags={"case": "1"})
    assert is_workflow_episode(episode.episode_id)

    # Episode feedback is accepted before the episode has any inference.
    await client.feedback(metric_name="task_success", episode_id=episode.episode_id, value=True)

    pinned = await client.inference(function_name="chat", episode_id=episode.episode_id, input=HELLO)
    assert pinned.variant_name == "b" and pinned.episode_id == episode.episode_id  # type: ignore[union-attr]
    stream = await client.inference(function_name="chat", episode_id=episode.episode_id, input=HELLO, stream=True)
    assert {chunk.variant_name async for chunk in stream} == {"b"}  # type: ignore[union-attr]
    named = await client.inference(function_name="chat", episode_id=episode.episode_id, input=HELLO, variant_name="a")
    assert named.variant_name == "a"  # the inference's own variant_name wins over the run's pin
    outside = await client.inference(function_name="chat", input=HELLO)
    assert outside.variant_name == "a"

    await client.feedback(metric_name="accepted", inference_id=pinned.inference_id, value=False)

    stored = rows(
        database_url,
        "SELECT variant_name, tags FROM chat_inferences WHERE episode_id = %s ORDER BY id",
        episode.episode_id,
    )
    assert [variant for variant, _ in stored] == ["b", "b", "a"]
    for _, tags in stored:
        assert tags["tensorzero::workflow_evaluation_run_id"] == str(run.run_id)
        assert tags["team"] == "search" and tags["case"] == "1"

    async with httpx.AsyncClient(base_url=gateway) as http:
        detail = (await http.get(f"/v1/workflow_evaluations/runs/{run.run_id}")).json()
    assert detail["run"]["variants"] == {"chat": "b"}
    assert detail["run"]["project_name"] == "rag" and detail["run"]["display_name"] == "try b"
    assert [(e["episode_id"], e["task_name"]) for e in detail["episodes"]] == [(str(episode.episode_id), "q1")]
    feedback = [(f["metric_name"], f["target_level"], f["target_id"], f["value"]) for f in detail["feedback"]]
    assert feedback == [
        ("task_success", "episode", str(episode.episode_id), True),
        ("accepted", "inference", str(pinned.inference_id), False),
    ]


async def test_run_and_episode_errors(client: AsyncTensorZeroGateway, gateway: str) -> None:
    with pytest.raises(TensorZeroError) as unknown_variant:
        await client.workflow_evaluation_run(variants={"chat": "zzz"})
    assert unknown_variant.value.status_code == 400
    assert "Variant zzz for function chat not found." in unknown_variant.value.text

    with pytest.raises(TensorZeroError) as unknown_function:
        await client.workflow_evaluation_run(variants={"nope": "a"})
    assert unknown_function.value.status_code == 404

    with pytest.raises(TensorZeroError) as unknown_run:
        await client.workflow_evaluation_run_episode(run_id=UUID(int=7 << 76 | 2 << 62))
    assert unknown_run.value.status_code == 404

    with pytest.raises(TensorZeroError) as not_an_episode:
        await client.inference(function_name="chat", episode_id=workflow_episode_id(), input=HELLO)
    assert not_an_episode.value.status_code == 400 and "episode_id" in not_an_episode.value.text

    async with httpx.AsyncClient(base_url=gateway) as http:
        # The client refuses reserved tag keys itself; the gateway does too.
        reserved = await http.post("/workflow_evaluation_run", json={"variants": {}, "tags": {"tensorzero::x": "y"}})
        assert reserved.status_code == 400 and "tags.tensorzero::x" in reserved.text
        unknown = await http.post("/workflow_evaluation_run", json={"variants": {}, "colour": "red"})
        assert unknown.status_code == 400 and "colour" in unknown.text
        # TensorZero's earlier paths answer the same.
        legacy = await http.post("/dynamic_evaluation_run", json={"variants": {"chat": "b"}})
        run_id = legacy.json()["run_id"]
        episode = await http.post(f"/dynamic_evaluation_run/{run_id}/episode", json={"task_name": "t"})
        assert episode.status_code == 200 and is_workflow_episode(UUID(episode.json()["episode_id"]))
        assert (await http.get(f"/v1/workflow_evaluations/runs/{workflow_episode_id()}")).status_code == 404


DYNAMIC = {
    "type": "chat_completion",
    "weight": 0.0,
    "model": "echo",
    "user_template": {"__tensorzero_remapped_path": "user", "__data": "Say {{ word }} kindly"},
}
TEMPLATED = {
    "messages": [{"role": "user", "content": [{"type": "template", "name": "user", "arguments": {"word": "hi"}}]}]
}


async def test_dynamic_variant_runs_only_as_a_dry_run(
    client: AsyncTensorZeroGateway, gateway: str, database_url: str
) -> None:
    answer = await client.inference(
        function_name="chat", input=TEMPLATED, dryrun=True, internal_dynamic_variant_config=DYNAMIC
    )
    assert answer.variant_name == "tensorzero::dynamic_variant"
    assert answer.content[0].text == "echo: Say hi kindly"  # type: ignore[union-attr]
    assert rows(database_url, "SELECT count(*) FROM chat_inferences") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM model_inferences") == [(0,)]

    with pytest.raises(TensorZeroError) as without_dryrun:
        await client.inference(function_name="chat", input=TEMPLATED, internal_dynamic_variant_config=DYNAMIC)
    assert without_dryrun.value.status_code == 400
    assert (
        "If `internal_dynamic_variant_config` is used, `dryrun` must also be set to true" in without_dryrun.value.text
    )

    # The client checks the config's types itself; the gateway names the field of what gets through.
    async with httpx.AsyncClient(base_url=gateway) as http:
        body: dict[str, Any] = {"function_name": "chat", "input": HELLO, "dryrun": True}
        bad_field = await http.post(
            "/inference", json={**body, "internal_dynamic_variant_config": {**DYNAMIC, "temperature": "hot"}}
        )
        assert bad_field.status_code == 400 and "internal_dynamic_variant_config.temperature" in bad_field.text
        bad_template = await http.post(
            "/inference", json={**body, "internal_dynamic_variant_config": {**DYNAMIC, "system_template": "{% if %}"}}
        )
        assert bad_template.status_code == 400 and "internal_dynamic_variant_config" in bad_template.text
        both = await http.post(
            "/inference", json={**body, "variant_name": "a", "internal_dynamic_variant_config": DYNAMIC}
        )
        assert both.status_code == 400 and "cannot both be set" in both.text
