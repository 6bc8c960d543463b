"""Experiments against a real PostgreSQL: an adaptive experiment fed by feedback the test sends shifts traffic to the
better variant and stops within its documented promise, with three replicas on one database agreeing on the
weights; static and uniform experiments; episode stickiness; GET /v1/functions/{F}/experiment; `lsd experiments`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

from lsd.config.loader import parse
from lsd.exits import EXIT_DATABASE
from lsd.ids import uuid7
from lsd.inference.experiment import fingerprint, promised_samples
from tests.support.gateway import in_process_gateway, run_lsd

if TYPE_CHECKING:
    from tests.conftest import PgCluster

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway.observability]
statistics_refresh_interval_s = 0  # the experiments job folds the statistics in itself

[gateway.observability.batch_writes]
flush_interval_ms = 10

[metrics.success]
type = "boolean"
optimize = "max"
level = "inference"

[functions.sim]
type = "chat"
[functions.sim.variants.good]
type = "chat_completion"
model = "dummy::echo"
[functions.sim.variants.bad]
type = "chat_completion"
model = "dummy::echo"
[functions.sim.variants.spare]
type = "chat_completion"
model = "dummy::echo"
[functions.sim.experimentation]
type = "track_and_stop"
candidate_variants = ["good", "bad"]
fallback_variants = ["spare"]
metric = "success"
min_samples_per_variant = 10
update_period_s = 1

[metrics.edits]
type = "float"
optimize = "min"
level = "episode"

[functions.episodic]
type = "chat"
[functions.episodic.variants.careful]
type = "chat_completion"
model = "dummy::echo"
[functions.episodic.variants.sloppy]
type = "chat_completion"
model = "dummy::echo"
[functions.episodic.experimentation]
type = "adaptive"
candidate_variants = ["careful", "sloppy"]
metric = "edits"
min_samples_per_variant = 5
update_period_s = 1

[functions.weighted]
type = "chat"
[functions.weighted.variants.a]
type = "chat_completion"
model = "dummy::echo"
[functions.weighted.variants.b]
type = "chat_completion"
model = "dummy::echo"
[functions.weighted.variants.c]
type = "chat_completion"
model = "dummy::echo"
[functions.weighted.experimentation]
type = "static"
candidate_variants = { a = 3.0, b = 1.0 }
fallback_variants = ["c"]

[functions.even]
type = "chat"
[functions.even.variants.a]
type = "chat_completion"
model = "dummy::echo"
[functions.even.variants.b]
type = "chat_completion"
model = "dummy::echo"
[functions.even.variants.c]
type = "chat_completion"
model = "dummy::echo"
[functions.even.experimentation]
type = "uniform"
candidate_variants = ["a", "c"]
"""

RATES = {"good": 0.9, "bad": 0.2}  # each variant's true success rate
MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}
BATCH = 20  # inferences between two looks at the allocation


@contextlib.asynccontextmanager
async def replicas(database_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` gateways (each its own app, engine and jobs) on the same database."""
    config = parse(CONFIG, base_dir=ROOT)
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            url = await stack.enter_async_context(in_process_gateway(config, database_url))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30)))
        yield clients


async def infer(http: httpx.AsyncClient, function: str, episode_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"function_name": function, "input": MESSAGE}
    if episode_id is not None:
        body["episode_id"] = episode_id
    response = await http.post("/inference", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def experiment(http: httpx.AsyncClient, function: str) -> dict[str, Any]:
    response = await http.get(f"/v1/functions/{function}/experiment")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def agreed(clients: list[httpx.AsyncClient], sent: int, function: str = "sim") -> dict[str, Any]:
    """The allocation once every replica has read the one that counts all `sent` feedback (or the stopped one)."""
    views: list[dict[str, Any]] = []
    for _ in range(300):
        views = [await experiment(http, function) for http in clients]
        first = views[0]
        counted = sum(v["count"] for v in first.get("evidence", {}).values())
        current = first["source"] == "stored" and (first["stopped"] or counted == sent)
        same = all(
            (v["weights"], v["phase"], v["evidence"], v["winner"])
            == (first["weights"], first["phase"], first["evidence"], first["winner"])
            for v in views
        )
        if current and same:
            return first
        await asyncio.sleep(0.1)
    raise AssertionError(f"the replicas never agreed on an allocation counting {sent} samples: {views}")


async def test_adaptive_experiment_shifts_traffic_and_stops_within_its_promise(database_url: str) -> None:
    rng = random.Random(19)
    promise = promised_samples(RATES["good"] - RATES["bad"], 0.5, 2, 0.05)  # delta's default
    served: Counter[str] = Counter()
    sent = 0
    looks: list[dict[str, Any]] = []
    async with replicas(database_url, 3) as clients:
        for round_ in range(100):
            for i in range(BATCH):
                http = clients[(round_ + i) % 3]  # requests spread over the replicas, as behind a load balancer
                answer = await infer(http, "sim")
                variant = answer["variant_name"]
                served[variant] += 1
                feedback = {"metric_name": "success", "inference_id": answer["inference_id"]}
                feedback["value"] = rng.random() < RATES[variant]
                response = await http.post("/feedback", json=feedback)
                assert response.status_code == 200, response.text
                sent += 1
            look = await agreed(clients, sent)
            looks.append(look)
            if look["stopped"]:
                break
            counts = [look["evidence"][name]["count"] if name in look["evidence"] else 0 for name in RATES]
            assert min(counts) < promise  # the promise: stopped by the first update where both have `promise`
        assert served["spare"] == 0  # a fallback only runs when the candidates fail
        final = looks[-1]
        assert final["stopped"] and final["winner"] == "good" and final["weights"] == {"good": 1.0, "bad": 0.0}
        assert final["stopped_at"] is not None
        good, bad = final["evidence"]["good"], final["evidence"]["bad"]
        assert good["lower"] > bad["upper"]  # the evidence it stopped on
        # on the way, traffic shifted to the better variant before the experiment stopped
        assert any(v["phase"] == "bandit" and v["weights"]["good"] > 0.6 for v in looks)
        # The variants are drawn at random (not seeded): when the experiment stops early the counts can tie (40/40
        # once in a full run); the shift itself is the weights' (above).
        assert served["good"] >= served["bad"]
        # once stopped, every replica serves only the winner
        for http in clients:
            assert {(await infer(http, "sim"))["variant_name"] for _ in range(10)} == {"good"}


async def test_static_and_uniform_experiments_with_sticky_episodes(database_url: str) -> None:
    async with replicas(database_url, 3) as clients:
        firsts: Counter[str] = Counter()
        for i in range(200):
            firsts[(await infer(clients[i % 3], "weighted"))["variant_name"]] += 1
        assert set(firsts) == {"a", "b"} and 0.6 < firsts["a"] / 200 < 0.9  # weights 3 : 1; c is a fallback
        evens = Counter([(await infer(clients[i % 3], "even"))["variant_name"] for i in range(100)])
        assert set(evens) == {"a", "c"}  # b is not a candidate
        # an episode keeps its variant, whichever replica serves it
        for _ in range(5):
            episode = str(uuid7())
            seen = {(await infer(http, "weighted", episode))["variant_name"] for http in clients for _ in range(3)}
            assert len(seen) == 1
        view = await experiment(clients[0], "weighted")
        assert view["type"] == "static" and view["source"] == "config"
        assert view["weights"] == {"a": 0.75, "b": 0.25} and view["fallback_variants"] == ["c"]
        even = await experiment(clients[1], "even")
        assert even["weights"] == {"a": 0.5, "c": 0.5} and even["candidate_variants"] == ["a", "c"]
        missing = await clients[2].get("/v1/functions/nope/experiment")
        assert missing.status_code == 404


async def test_endpoint_and_cli_show_the_stored_allocation(database_url: str, tmp_path: Path) -> None:
    config_path = tmp_path / "lsd.toml"
    config_path.write_text(CONFIG)
    async with replicas(database_url, 1) as (http,):
        before = await experiment(http, "sim")
        assert before["type"] == "adaptive" and before["phase"] == "explore"
        assert before["weights"] == {"good": 0.5, "bad": 0.5}
        assert before["metric"] == {"name": "success", "type": "boolean", "optimize": "max", "level": "inference"}
        assert before["parameters"]["min_samples_per_variant"] == 10
        for _ in range(6):
            answer = await infer(http, "sim")
            feedback = {"metric_name": "success", "inference_id": answer["inference_id"], "value": True}
            assert (await http.post("/feedback", json=feedback)).status_code == 200
        view = await agreed([http], 6)
        assert view["source"] == "stored" and view["phase"] == "explore"
    env = {"LSD_DATABASE_URL": database_url}
    shown = await asyncio.to_thread(run_lsd, "experiments", "show", "sim", "--config", str(config_path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "adaptive experiment (weights stored by the experiments job)" in shown.stdout
    assert "metric success (boolean, optimize max, inference level)" in shown.stdout
    assert "fallbacks: spare" in shown.stdout
    as_json = await asyncio.to_thread(
        run_lsd, "experiments", "show", "sim", "--json", "--config", str(config_path), env=env
    )
    assert json.loads(as_json.stdout)["evidence"] == view["evidence"]
    static = await asyncio.to_thread(run_lsd, "experiments", "show", "weighted", "--config", str(config_path), env=env)
    assert "a                          0.750" in static.stdout
    unknown = await asyncio.to_thread(run_lsd, "experiments", "show", "nope", "--config", str(config_path), env=env)
    assert unknown.returncode != 0 and "nope" in unknown.stderr


@pytest.mark.parametrize("namespace_type", ["static"])
async def test_a_namespace_override_applies_to_its_requests(database_url: str, namespace_type: str) -> None:
    text = CONFIG + (
        f'[functions.weighted.experimentation.namespaces.acme]\ntype = "{namespace_type}"\ncandidate_variants = ["c"]\n'
    )
    config = parse(text, base_dir=ROOT)
    async with in_process_gateway(config, database_url) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"function_name": "weighted", "input": MESSAGE, "namespace": "acme"}
        seen = {(await http.post("/inference", json=body)).json()["variant_name"] for _ in range(20)}
        assert seen == {"c"}
        other = {**body, "namespace": "someone_else"}  # an unknown namespace gets the function's experiment
        assert {(await http.post("/inference", json=other)).json()["variant_name"] for _ in range(30)} <= {"a", "b"}


async def test_episode_level_float_metric_to_minimise(database_url: str) -> None:
    """Feedback on episodes (each with one inference) counts for the variant that served them; lower is better."""
    rng = random.Random(5)
    edits = {"careful": 1.0, "sloppy": 3.0}
    async with replicas(database_url, 1) as (http,):
        look: dict[str, Any] = {}
        for sent in range(1, 200):
            answer = await infer(http, "episodic", str(uuid7()))
            value = edits[answer["variant_name"]] + rng.gauss(0, 0.3)
            feedback = {"metric_name": "edits", "episode_id": answer["episode_id"], "value": value}
            assert (await http.post("/feedback", json=feedback)).status_code == 200
            if sent % 10 == 0:
                look = await agreed([http], sent, "episodic")
                if look["stopped"]:
                    break
        assert look["stopped"] and look["winner"] == "careful"
        careful, sloppy = look["evidence"]["careful"], look["evidence"]["sloppy"]
        assert careful["mean"] < 1.5 < 2.5 < sloppy["mean"] and careful["upper"] < sloppy["lower"]


async def test_cli_on_an_unmigrated_database_says_so(pg: PgCluster, tmp_path: Path) -> None:
    config_path = tmp_path / "lsd.toml"
    config_path.write_text(CONFIG)
    name = pg.create_database()
    try:
        env = {"LSD_DATABASE_URL": pg.url(name)}
        shown = await asyncio.to_thread(run_lsd, "experiments", "show", "sim", "--config", str(config_path), env=env)
    finally:
        pg.drop_database(name)
    assert shown.returncode == EXIT_DATABASE and "run `lsd migrate` first" in shown.stderr


async def test_a_changed_experiment_starts_over_at_once(database_url: str) -> None:
    """An allocation stored for another version of the experiment (here: stopped on `bad`) is neither used nor kept:
    the first update recomputes it, even though it is younger than `update_period_s`."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO experiment_allocations (function_name, weights, phase, evidence, stopped, winner, "
            "stopped_at, fingerprint, updated_at) VALUES ('sim', '{\"good\": 0.0, \"bad\": 1.0}', 'stopped', '{}', "
            "true, 'bad', now(), 'an older config', now())"
        )
    config = parse(CONFIG.replace("update_period_s = 1\n", "update_period_s = 3600\n"), base_dir=ROOT)
    async with in_process_gateway(config, database_url) as url, httpx.AsyncClient(base_url=url) as http:
        view = await agreed([http], 0)
        assert view["phase"] == "explore" and view["winner"] is None
        assert view["weights"] == {"good": 0.5, "bad": 0.5}
        assert {(await infer(http, "sim"))["variant_name"] for _ in range(40)} == {"good", "bad"}


async def test_an_episode_keeps_its_variant_when_the_weights_move(database_url: str) -> None:
    """The stored weights favour `bad` 99 to 1; an episode whose first inference ran `good` stays on `good`."""
    config = parse(CONFIG.replace("update_period_s = 1\n", "update_period_s = 3600\n"), base_dir=ROOT)
    sim = config.functions["sim"].experimentation
    assert sim is not None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO experiment_allocations (function_name, weights, phase, evidence, stopped, fingerprint, "
            "updated_at) VALUES ('sim', '{\"good\": 0.01, \"bad\": 0.99}', 'bandit', '{}', false, %s, now())",
            (fingerprint(sim),),
        )
    async with in_process_gateway(config, database_url) as url, httpx.AsyncClient(base_url=url) as http:
        for _ in range(100):  # the experiments job reads the stored weights as it starts
            view = await experiment(http, "sim")
            if view["source"] == "stored":
                break
            await asyncio.sleep(0.05)
        assert view["weights"] == {"good": 0.01, "bad": 0.99}
        episode = str(uuid7())
        first = await http.post(
            "/inference", json={"function_name": "sim", "input": MESSAGE, "episode_id": episode, "variant_name": "good"}
        )
        assert first.status_code == 200, first.text
        for _ in range(100):  # the writer stores the row within its flush interval
            with psycopg.connect(database_url) as conn:
                if conn.execute(
                    "SELECT count(*) FROM chat_inferences WHERE episode_id = %s", (episode,)
                ).fetchone() == (1,):
                    break
            await asyncio.sleep(0.05)
        assert {(await infer(http, "sim", episode))["variant_name"] for _ in range(20)} == {"good"}
        fresh = Counter([(await infer(http, "sim", str(uuid7())))["variant_name"] for _ in range(50)])
        assert fresh["bad"] > 40  # new episodes follow the weights
