"""A gateway config and traffic for the console's tests: two functions (one with a failing first provider), two
variants, a boolean and a float metric, tagged inferences, feedback, and refreshed statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import httpx
import psycopg

from lsd.store.statistics import refresh_statistics_sync
from tests.support.configs import ECHO_MODEL, dummy_fallback_model
from tests.support.polling import count, eventually

CONFIG = f"""
[gateway.observability.batch_writes]
flush_interval_ms = 20
[gateway.observability]
statistics_refresh_interval_s = 0
{ECHO_MODEL}
{dummy_fallback_model("flaky", failing="broken", answering="backup")}
[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "echo"
weight = 0.5
[functions.chat.variants.b]
type = "chat_completion"
model = "echo"
weight = 0.5
[functions.wobbly]
type = "chat"
[functions.wobbly.variants.only]
type = "chat_completion"
model = "flaky"
[metrics.thumbs]
type = "boolean"
optimize = "max"
level = "inference"
[metrics.score]
type = "float"
optimize = "max"
level = "inference"
"""
AUTH = "[gateway.auth]\nenabled = true\n"


@dataclass
class Traffic:
    inference_ids: list[UUID] = field(default_factory=list)
    episode_id: UUID | None = None
    failing_inference_id: UUID | None = None


def infer(client: httpx.Client, function: str, text: str, **extra: object) -> dict[str, object]:
    body = {"function_name": function, "input": {"messages": [{"role": "user", "content": text}]}, **extra}
    response = client.post("/inference", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def send_traffic(client: httpx.Client, database_url: str) -> Traffic:
    """Inferences and feedback through the API, waited for in PostgreSQL; then one statistics refresh."""
    traffic = Traffic()
    first = infer(client, "chat", "hello 0", tags={"user": "alice"})
    traffic.episode_id = UUID(str(first["episode_id"]))
    traffic.inference_ids.append(UUID(str(first["inference_id"])))
    for i in range(1, 6):
        answer = infer(client, "chat", f"hello {i}", episode_id=str(traffic.episode_id), tags={"user": "bob"})
        traffic.inference_ids.append(UUID(str(answer["inference_id"])))
    failing = infer(client, "wobbly", "needs a fallback")
    traffic.failing_inference_id = UUID(str(failing["inference_id"]))
    assert eventually(lambda: count(database_url, "SELECT count(*) FROM chat_inferences") == 7, 15)
    for n, inference_id in enumerate(traffic.inference_ids[:3]):
        response = client.post(
            "/feedback", json={"metric_name": "thumbs", "inference_id": str(inference_id), "value": n != 1}
        )
        assert response.status_code == 200, response.text
    response = client.post(
        "/feedback", json={"metric_name": "score", "inference_id": str(traffic.inference_ids[0]), "value": 0.75}
    )
    assert response.status_code == 200, response.text
    assert eventually(lambda: count(database_url, "SELECT count(*) FROM boolean_metric_feedback") == 3, 15)
    assert eventually(lambda: count(database_url, "SELECT count(*) FROM model_inferences") == 8, 15)
    with psycopg.connect(database_url, autocommit=True) as conn:
        refresh_statistics_sync(conn)
    return traffic
