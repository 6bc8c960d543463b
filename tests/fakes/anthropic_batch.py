"""A fake Anthropic Message Batches API on a real socket.

    async with FakeAnthropicBatch(api_key="sk-ant-test") as fake:
        fake.api_base        # "http://127.0.0.1:<port>/v1/"  (an `anthropic` provider's api_base)
        fake.outcome         # how the next batches end: ended | expired | canceled
        fake.polls_to_end    # GETs of a batch before it ends (default 2)
        fake.batch_gets      # GET count per batch id
        fake.created         # every create-batch body received

Routes: POST /v1/messages/batches, GET /v1/messages/batches/{id}, GET /v1/messages/batches/{id}/results
(JSONL). Each request's answer echoes its last user text; a request whose last user text contains "[fail]"
is `errored`. With outcome `expired` every request but the first expires; with `canceled` all are canceled.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.serving import FakeServer


def _last_user_text(params: dict[str, Any]) -> str:
    for message in reversed(params.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content or [] if isinstance(b, dict))
    return ""


class FakeAnthropicBatch(FakeServer):
    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"access_log": None}

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.outcome = "ended"
        self.polls_to_end = 2
        self.batch_gets: dict[str, int] = {}
        self.created: list[dict[str, Any]] = []
        self._batches: dict[str, dict[str, Any]] = {}
        self._requests: dict[str, list[dict[str, Any]]] = {}
        self._outcomes: dict[str, str] = {}
        self._ids = itertools.count(1)

    async def start(self) -> str:
        await self.listen()
        return self.api_base

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/messages/batches", self._create)
        app.router.add_get("/v1/messages/batches/{batch_id}", self._get)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self._results)
        return app

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1/"

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("anthropic-version") is None:
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error"}}, status=400)
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            return web.json_response(body, status=401)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.created.append(body)
        batch_id = f"msgbatch_{next(self._ids)}"
        self._requests[batch_id] = body["requests"]
        self._outcomes[batch_id] = self.outcome
        self.batch_gets[batch_id] = 0
        self._batches[batch_id] = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(body["requests"]),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "results_url": None,
        }
        return web.json_response(self._batches[batch_id])

    async def _get(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        batch_id = request.match_info["batch_id"]
        batch = self._batches.get(batch_id)
        if batch is None:
            return web.json_response({"type": "error", "error": {"type": "not_found_error"}}, status=404)
        self.batch_gets[batch_id] += 1
        if batch["processing_status"] == "in_progress" and self.batch_gets[batch_id] >= self.polls_to_end:
            counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            for line in self._lines(batch_id):
                counts[line["result"]["type"]] += 1
            batch.update(
                processing_status="ended",
                request_counts=counts,
                results_url=f"{self.api_base}messages/batches/{batch_id}/results",
            )
        return web.json_response(batch)

    def _lines(self, batch_id: str) -> list[dict[str, Any]]:
        outcome = self._outcomes[batch_id]
        lines = []
        for n, item in enumerate(self._requests[batch_id]):
            params = item["params"]
            text = _last_user_text(params)
            if outcome == "canceled" or (outcome == "expired" and n > 0):
                result: dict[str, Any] = {"type": "canceled" if outcome == "canceled" else "expired"}
            elif "[fail]" in text:
                error = {"type": "error", "error": {"type": "invalid_request_error", "message": "refused (fake)"}}
                result = {"type": "errored", "error": error}
            else:
                answer = f"echo: {text}"
                message = {
                    "id": f"msg_{n}",
                    "type": "message",
                    "role": "assistant",
                    "model": params.get("model"),
                    "content": [{"type": "text", "text": answer}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": max(len(text.split()), 1), "output_tokens": len(answer.split())},
                }
                result = {"type": "succeeded", "message": message}
            lines.append({"custom_id": item["custom_id"], "result": result})
        return lines

    async def _results(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        batch_id = request.match_info["batch_id"]
        if self._batches.get(batch_id, {}).get("processing_status") != "ended":
            return web.json_response({"type": "error", "error": {"type": "not_found_error"}}, status=404)
        body = b"".join(orjson.dumps(line) + b"\n" for line in self._lines(batch_id))
        return web.Response(body=body, content_type="application/binary")
