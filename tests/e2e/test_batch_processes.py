"""Batches across real processes: `lsd batch submit|status|wait`, and two `lsd serve` replicas plus the CLI
polling one batch at once, which is recorded exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psycopg

from tests.support.gateway import ROOT, Daemons, lsd_command, run_lsd

CONFIG = """
[gateway.batch]
poll_interval_s = 0.1

[gateway.observability]
spool_dir = "@TMP@/spool"

[models.dummy]
routing = ["d"]
[models.dummy.providers.d]
type = "dummy"
model_name = "flaky"
batch_delay_ms = 3000
# Each poll takes longer than poll_interval_s, so polls from all three processes overlap and race to record.
latency_ms = 400

[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "dummy"
"""

INPUTS = 40


def setup(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "lsd.toml"
    config.write_text(CONFIG.replace("@TMP@", str(tmp_path)))
    inputs = tmp_path / "inputs.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": f"input {i}"}]}) for i in range(INPUTS - 1)]
    lines.append(json.dumps({"input": {"messages": [{"role": "user", "content": "last"}]}, "tags": {"k": "v"}}))
    inputs.write_text("\n".join(lines) + "\n")
    return config, inputs


def test_two_replicas_and_the_cli_record_a_batch_once(tmp_path: Path, database_url: str, daemons: Daemons) -> None:
    config, inputs = setup(tmp_path)
    env = {"LSD_DATABASE_URL": database_url}
    replicas = [daemons.start(config.read_text(), database_url, wait=False) for _ in range(2)]
    results = tmp_path / "results.jsonl"
    stop = threading.Event()

    def hammer(base_url: str, batch_id: str) -> None:
        with httpx.Client(base_url=base_url) as client:
            while not stop.is_set():
                assert client.get(f"/batch_inference/{batch_id}").status_code == 200

    try:
        for daemon in replicas:
            daemon.wait_ready()
        # The dummy batch ends 3 s after submission: by then both replicas (their pollers and the GETs below)
        # and `lsd batch wait` are all polling it every 0.1 s.
        submitted = run_lsd("batch", "--config", str(config), "submit", "--function", "chat", str(inputs), env=env)
        assert submitted.returncode == 0, submitted.stderr
        batch = json.loads(submitted.stdout)
        assert len(batch["inference_ids"]) == INPUTS
        threads = [
            threading.Thread(target=hammer, args=(d.base_url, batch["batch_id"])) for d in replicas for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        waiter = subprocess.Popen(
            lsd_command(
                "batch",
                "--config",
                str(config),
                "wait",
                batch["batch_id"],
                "--output",
                str(results),
                "--interval",
                "0.02",
            ),
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = waiter.communicate(timeout=60)
        time.sleep(0.6)  # the replicas keep asking, and their polls in flight (0.4 s each) end
        stop.set()
        for thread in threads:
            thread.join()
        assert waiter.returncode == 0, err
        assert f"batch completed (completed): {INPUTS // 2} results, {INPUTS // 2} failed inputs" in err
        status = run_lsd("batch", "--config", str(config), "status", batch["batch_id"], env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["status"] == "completed"
    finally:
        stop.set()
        for daemon in replicas:
            daemon.terminate()
    # Exactly one of the three processes recorded the results (each logs it when its transaction won).
    logs = [daemon.log() for daemon in replicas] + [err]
    assert sum(log.count("results recorded") for log in logs) == 1, logs
    assert sum(log.count("already been recorded") for log in logs) >= 1, logs  # the race did happen

    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == INPUTS
    assert [line["inference_id"] for line in lines] == batch["inference_ids"]  # one line per input, in order
    answered = [line for line in lines if "error" not in line]
    assert answered and all({"content", "usage"} <= set(line) and "output" not in line for line in answered)
    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM chat_inferences), (SELECT count(DISTINCT id) FROM chat_inferences), "
            "(SELECT count(*) FROM model_inferences), (SELECT count(DISTINCT inference_id) FROM model_inferences), "
            "(SELECT count(*) FROM batch_request_events WHERE status <> 'pending')"
        ).fetchone()
        assert counts == (INPUTS // 2, INPUTS // 2, INPUTS, INPUTS, 1)
        tags = conn.execute("SELECT tags FROM chat_inferences WHERE tags <> '{}'").fetchall()
        assert tags == [({"k": "v"},)]


def test_usage_errors(tmp_path: Path, database_url: str) -> None:
    config, inputs = setup(tmp_path)
    env = {"LSD_DATABASE_URL": database_url}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "robot", "content": "x"}]}\n')
    result = run_lsd("batch", "--config", str(config), "submit", "--function", "chat", str(bad), env=env)
    assert result.returncode == 2 and "inputs[0].messages[0].role" in result.stderr
    result = run_lsd("batch", "--config", str(config), "submit", "--function", "nope", str(inputs), env=env)
    assert result.returncode == 2 and "Unknown function: nope" in result.stderr
    result = run_lsd("batch", "--config", str(config), "status", "not-an-id", env=env)
    assert result.returncode == 2 and "not a batch id" in result.stderr
    result = run_lsd("batch", "--config", str(config), "status", "0190f0a8-1111-7000-8000-000000000000", env=env)
    assert result.returncode == 2 and "Batch request not found for id" in result.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM batch_requests").fetchone() == (0,)


def test_the_demo_config_completes_a_batch(database_url: str, daemons: Daemons) -> None:
    daemon = daemons.start((ROOT / "config" / "lsd.toml").read_text(), database_url)
    with httpx.Client(base_url=daemon.base_url) as client:
        inputs = [{"messages": [{"role": "user", "content": "hi"}]}]
        r = client.post("/batch_inference", json={"function_name": "chat", "inputs": inputs})
        assert r.status_code == 200, r.text
        batch_id = r.json()["batch_id"]
        deadline = time.monotonic() + 10
        while (answer := client.get(f"/batch_inference/{batch_id}").json())["status"] == "pending":
            assert time.monotonic() < deadline, "still pending"
            time.sleep(0.2)
    assert answer["status"] == "completed"
    assert answer["inferences"][0]["content"] == [{"type": "text", "text": "echo: hi"}]
