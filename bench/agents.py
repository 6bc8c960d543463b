"""Part agents: agent sessions, each step sending the whole conversation again. The bare proxy, `lsd serve` storing an
input's repeated long strings once (`input_strings_once = true`, the default) and `lsd serve` storing every input
whole (`false`): throughput, CPU per request of the server and of PostgreSQL, and bytes stored per inference.

    python -m bench.run --parts agents [--agent-sessions 160 --agent-steps 10 --prompt-kib 100]

Each session opens with a shared system prompt (8 KiB: an agent's instructions, the same for every session) and a
user message of `--prompt-kib` KiB of its own (a file or screenshot the agent reads); every step adds a tool call and
its 4 KiB result, and sends everything so far (step 10 of the defaults carries ~144 KiB). `--agent-concurrency`
sessions run at once, each step after the previous one's answer. After the load, lsd's writer is let finish; the
bytes are the growth of every table (heap, TOAST, indexes) over the inferences recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.bigctx import count_inferences, prompt, start_target, stored_bytes
from bench.children import Children
from bench.cpu import machine_cpu_s, tree_cpu_s
from bench.database import Cluster
from bench.gateway import MODEL, drain
from bench.loop import run as run_async
from bench.report import table

TARGETS = ("bare", "lsd", "lsd-inline")
SYSTEM_KIB = 8
RESULT_KIB = 4


@dataclass(frozen=True, slots=True)
class Settings:
    sessions: int = 160
    steps: int = 10
    concurrency: int = 16
    prompt_kib: int = 100

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = getattr(args, "quick", False)
        return cls(
            sessions=8 if quick else args.agent_sessions,
            steps=3 if quick else args.agent_steps,
            concurrency=args.agent_concurrency,
            prompt_kib=args.prompt_kib,
        )


@dataclass(frozen=True, slots=True)
class Session:
    """One session's texts, made before the load; each step's body is built when it is sent."""

    system: str
    first: str
    results: tuple[str, ...]

    @classmethod
    def make(cls, settings: Settings, session: int, system: str) -> Session:
        first = prompt(settings.prompt_kib, seed=10_000 + session)
        results = tuple(prompt(RESULT_KIB, seed=session * 1_000 + step) for step in range(settings.steps - 1))
        return cls(system, first, results)

    def bodies(self) -> Iterator[bytes]:
        """The body of each step: the whole conversation so far."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.first}]
        yield orjson.dumps({"model_name": MODEL, "input": {"system": self.system, "messages": messages}})
        for step, result in enumerate(self.results):
            call = f"call_{step}"
            messages += [
                {"role": "assistant", "content": [{"type": "tool_call", "id": call, "name": "read", "arguments": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "id": call, "name": "read", "result": result}]},
            ]
            yield orjson.dumps({"model_name": MODEL, "input": {"system": self.system, "messages": messages}})


async def load(url: str, sessions: list[Session], concurrency: int) -> dict[str, Any]:
    """Every session's steps in order, `concurrency` sessions at once: requests, errors, seconds, latencies."""
    queue: asyncio.Queue[Session] = asyncio.Queue()
    for session in sessions:
        queue.put_nowait(session)
    latencies: list[float] = []
    errors = 0

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not queue.empty():
            for body in queue.get_nowait().bodies():
                start = time.perf_counter()
                async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                    await reply.read()
                    if reply.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 2),
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
    }


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(
        f"\n## Part agents: {settings.sessions} sessions of {settings.steps} steps, {settings.concurrency} at once; "
        f"{SYSTEM_KIB} KiB system prompt, {settings.prompt_kib} KiB first message, {RESULT_KIB} KiB per tool result"
    )
    fake, fake_url = children.fake("agents-fake", "bench.token_fake", "--answer-bytes", "512")
    system = prompt(SYSTEM_KIB, seed=1)  # the same instructions for every session
    sessions = [Session.make(settings, s, system) for s in range(settings.sessions)]
    warm = [Session.make(settings, 1_000_000 + s, system) for s in range(settings.concurrency)]
    sent = sum(len(b) for b in sessions[0].bodies()) * len(sessions)
    results: dict[str, Any] = {}
    try:
        for name in TARGETS:
            database_url = cluster.create(f"bench_agents_{name.replace('-', '_')}")
            once = "false" if name == "lsd-inline" else "true"
            child, url = start_target(
                name, children, workdir, fake_url, database_url,
                part="agents", observability=f"input_strings_once = {once}\n",
            )  # fmt: skip
            run_async(load(url, warm, settings.concurrency))  # connections, caches: recorded too, counted apart
            if name != "bare":
                drain(url)
            before = stored_bytes(database_url)
            recorded_before = count_inferences(database_url) if name != "bare" else 0
            roles = {"server": child.pid, "postgres": cluster.postmaster_pid(), "fake": fake.pid}
            cpu0 = {role: tree_cpu_s(pid) for role, pid in roles.items()}
            machine0 = machine_cpu_s()
            done = run_async(load(url, sessions, settings.concurrency))
            entry: dict[str, Any] = {"load": done}
            if name != "bare":
                entry["writer_drain"] = drain(url)
            ok = max(done["requests"] - done["errors"], 1)
            per_request = {role: round(1e6 * (tree_cpu_s(pid) - cpu0[role]) / ok, 1) for role, pid in roles.items()}
            per_request["machine"] = round(1e6 * (machine_cpu_s() - machine0) / ok, 1)
            entry["cpu_us_per_request_by_role"] = per_request
            children.stop(child, timeout_s=120)
            if name != "bare":
                recorded = count_inferences(database_url) - recorded_before
                entry["inferences_recorded"] = recorded
                entry["bytes_per_inference"] = round((stored_bytes(database_url) - before) / max(recorded, 1))
            print(
                f"  {name}: {done['rps']:,.1f} req/s, p50 {done['p50_ms']} ms, p99 {done['p99_ms']} ms, errors "
                f"{done['errors']}; CPU per request (us): "
                + ", ".join(f"{role} {us:,.0f}" for role, us in per_request.items())
                + (
                    f"; stored {entry['bytes_per_inference']:,} B per inference"
                    if "bytes_per_inference" in entry
                    else ""
                )
            )
            results[name] = entry
    finally:
        children.stop(fake)
    mean_sent = round(sent / max(len(sessions) * settings.steps, 1))
    summary = {"settings": asdict(settings), "sent_bytes_per_request": mean_sent, "targets": results}
    print()
    print(render(summary))
    return summary


def render(summary: dict[str, Any]) -> str:
    targets = summary["targets"]
    bare = targets.get("bare")
    rows = []
    for name, entry in targets.items():
        done, roles = entry["load"], entry["cpu_us_per_request_by_role"]
        ratio = round(done["rps"] / bare["load"]["rps"], 2) if bare and bare["load"]["rps"] else None
        drained = entry.get("writer_drain") or {}
        rows.append(
            [name, done["rps"], ratio, done["p50_ms"], done["p99_ms"], roles["server"], roles["postgres"],
             roles["machine"], drained.get("seconds"), entry.get("bytes_per_inference")]
        )  # fmt: skip
    headers = ["target", "req/s", "vs bare", "p50 ms", "p99 ms", "server CPU us/req", "PostgreSQL CPU us/req"]
    headers += ["machine CPU us/req", "writer drain s", "stored B/inference"]
    lines = [table(headers, rows)]
    lines.append(f"\nsent per request: {summary['sent_bytes_per_request']:,} bytes (mean over the steps)")
    return "\n".join(lines)
