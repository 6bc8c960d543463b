"""The gateway the robustness suite fuzzes: a real `lsd serve` on the dummy provider, one per module, and the
ledger that checks a refused request left no rows.

Writes are synchronous (`async_writes = false`): a request's rows are committed before its answer, so the row
counts can be compared with the answers as soon as they arrive.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import boolean_metric, chat_function, echo_chat
from tests.support.gateway import Daemon

if TYPE_CHECKING:
    from tests.conftest import PgCluster

MAX_BODY_BYTES = 64 * 1024

CONFIG = f"""
[gateway]
max_body_bytes = {MAX_BODY_BYTES}
[gateway.observability]
async_writes = false

{echo_chat()}
{chat_function("other")}
{boolean_metric("good")}

# On a fake OpenAI server; its name on the chat route must be refused as a 4xx.
[embedding_models.emb]
routing = ["openai"]
[embedding_models.emb.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{{api_base}}"
api_key_location = "none"
"""

# Requests that may add rows, by route: a refused (4xx) request must add none.
INFERENCE_ROUTES = frozenset(
    {
        "/inference",
        "/openai/v1/chat/completions",
        "/openai/v1/embeddings",
        "/anthropic/v1/messages",
        "/gemini/{version}/models/{call}",
        "/gemini/{version}/publishers/google/models/{call}",
        "/gemini/{version}/projects/{project}/locations/{location}/publishers/google/models/{call}",
    }
)
FEEDBACK_ROUTES = frozenset({"/feedback", "/v1/evaluations/human_feedback"})


@dataclass
class Gateway:
    base_url: str
    database_url: str
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route kind, status class) -> count
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)

    def note(self, method: str, path: str, status: int, body: bytes) -> None:
        """Count one answer; a 5xx is kept, with its body, for the assertion that there are none."""
        self.requests += 1
        kind = "inference" if path in INFERENCE_ROUTES else "feedback" if path in FEEDBACK_ROUTES else "other"
        self.answers[kind, status // 100] += 1
        if status >= 500:
            self.server_errors.append(f"{method} {path} -> {status}: {body[:300]!r}")

    def rows(self) -> dict[str, int]:
        with psycopg.connect(self.database_url) as conn:
            inferences = conn.execute(
                "SELECT (SELECT count(*) FROM chat_inferences) + (SELECT count(*) FROM json_inferences)"
                " + (SELECT count(*) FROM embedding_inferences)"
            ).fetchone()
            feedback = conn.execute(
                "SELECT (SELECT count(*) FROM boolean_metric_feedback) + (SELECT count(*) FROM float_metric_feedback)"
                " + (SELECT count(*) FROM comment_feedback) + (SELECT count(*) FROM demonstration_feedback)"
            ).fetchone()
            orphans = conn.execute(
                "SELECT count(*) FROM model_inferences m WHERE NOT EXISTS (SELECT 1 FROM chat_inferences c"
                " WHERE c.id = m.inference_id) AND NOT EXISTS (SELECT 1 FROM json_inferences j"
                " WHERE j.id = m.inference_id) AND NOT EXISTS (SELECT 1 FROM embedding_inferences e"
                " WHERE e.id = m.inference_id)"
            ).fetchone()
        assert inferences is not None and feedback is not None and orphans is not None
        return {"inferences": inferences[0], "feedback": feedback[0], "orphan_attempts": orphans[0]}

    def assert_no_rows_from_refusals(self) -> None:
        """Every inference and feedback row belongs to a request answered 2xx; no attempt row lacks its inference
        (the dummy provider and the fake always answer, so every attempt belongs to an answered inference)."""
        rows = self.rows()
        assert rows["inferences"] <= self.answers["inference", 2], (rows, self.answers)
        assert rows["feedback"] <= self.answers["feedback", 2], (rows, self.answers)
        assert rows["orphan_attempts"] == 0, rows


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    """A fake OpenAI server (the embedding model's) on its own event loop in a thread; yields its api_base."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeOpenAI(record=False)
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake.api_base
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def gateway(
    pg: PgCluster, template_db: str, fake_openai: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """`lsd serve` on a fresh database, for one test module."""
    name = pg.database_from(template_db)
    database_url = pg.url(name)
    folder: Path = tmp_path_factory.mktemp("robustness")
    config_path = folder / "lsd.toml"
    config_path.write_text(CONFIG.replace("{api_base}", fake_openai))
    daemon = Daemon(config_path, database_url, env={"LSD_LOG_FORMAT": "text"})
    try:
        daemon.wait_ready()
        yield Gateway(daemon.base_url, database_url)
    finally:
        daemon.terminate()
        pg.drop_database(name)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as c:
        yield c
