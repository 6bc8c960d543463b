"""A fake OpenAI (and Azure OpenAI) Batch API on a real socket: files upload, batches, polling, result files.

    async with FakeOpenAIBatch(api_key="sk-test") as fake:
        fake.api_base        # "http://127.0.0.1:<port>/v1/"  (an `openai` provider's api_base)
        fake.url             # "http://127.0.0.1:<port>"      (an `azure` provider's endpoint)
        fake.outcome         # how the next batches end: completed | expired | failed | cancelled
        fake.polls_to_end    # GETs of a batch before it ends (default 2: validating, in_progress, then the end)
        fake.batch_gets      # GET /batches/{id} count per batch id
        fake.uploads         # the JSONL files received, decoded, by file id

Routes: POST /v1/files (multipart, purpose=batch), POST /v1/batches, GET /v1/batches/{id},
GET /v1/files/{id}/content, and Azure's /openai/files, /openai/batches[/{id}], /openai/files/{id}/content
(with ?api-version=). Each line's answer echoes its last user text ("echo: <text>"); a line whose last user
text contains "[fail]" goes to the error file with a 400. An expired batch answers only its first half of
the lines (the rest have no result); a cancelled one only its first line; a failed one has no files and
reports a validation error.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.serving import FakeServer


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def _words(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
        total += len(str(text).split())
    return max(total, 1)


class FakeOpenAIBatch(FakeServer):
    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"access_log": None}

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.outcome = "completed"
        self.polls_to_end = 2
        self.batch_gets: dict[str, int] = {}
        self.uploads: dict[str, list[dict[str, Any]]] = {}
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        for prefix in ("/v1", "/openai"):
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_post(f"{prefix}/batches", self._create)
            app.router.add_get(f"{prefix}/batches/{{batch_id}}", self._get)
            app.router.add_get(f"{prefix}/files/{{file_id}}/content", self._content)
        return app

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1/"

    def _authorised(self, request: web.Request) -> bool:
        if self.api_key is None:
            return True
        azure = request.path.startswith("/openai/")
        if azure:
            return request.headers.get("api-key") == self.api_key and "api-version" in request.query
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _unauthorised(self) -> web.Response:
        body = {"error": {"message": "Incorrect API key provided (fake).", "type": "invalid_request_error"}}
        return web.json_response(body, status=401)

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not isinstance(upload, web.FileField):
            return web.json_response({"error": {"message": "purpose must be batch, with a file"}}, status=400)
        data = upload.file.read()
        file_id = f"file-{next(self._ids)}"
        self._files[file_id] = data
        self.uploads[file_id] = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        return web.json_response({"id": file_id, "object": "file", "purpose": "batch", "bytes": len(data)})

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        file_id = body.get("input_file_id")
        if file_id not in self._files or body.get("completion_window") != "24h":
            return web.json_response({"error": {"message": "bad input_file_id or window"}}, status=400)
        batch_id = f"batch_{next(self._ids)}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "outcome": self.outcome,
        }
        self._batches[batch_id] = batch
        self.batch_gets[batch_id] = 0
        return web.json_response({k: v for k, v in batch.items() if k != "outcome"})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        batch_id = request.match_info["batch_id"]
        batch = self._batches.get(batch_id)
        if batch is None:
            return web.json_response({"error": {"message": "No batch found (fake)."}}, status=404)
        self.batch_gets[batch_id] += 1
        gets = self.batch_gets[batch_id]
        if batch["status"] in ("validating", "in_progress", "finalizing"):
            if gets < self.polls_to_end:
                batch["status"] = "in_progress"
            else:
                self._end(batch)
        return web.json_response({k: v for k, v in batch.items() if k != "outcome"})

    def _end(self, batch: dict[str, Any]) -> None:
        outcome = batch["outcome"]
        batch["status"] = outcome
        lines = self.uploads[batch["input_file_id"]]
        if outcome == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "the model is not batchable (fake)", "line": 1}],
            }
            return
        if outcome == "expired":
            lines = lines[: len(lines) // 2]
        elif outcome == "cancelled":
            lines = lines[:1]
        output, errors = [], []
        for n, line in enumerate(lines):
            body = line["body"]
            text = _last_user_text(body)
            if "[fail]" in text:
                error = {"error": {"message": "this input was refused (fake)", "type": "invalid_request_error"}}
                response = {"status_code": 400, "request_id": f"req_{n}", "body": error}
                errors.append({"id": f"r_{n}", "custom_id": line["custom_id"], "response": response, "error": None})
                continue
            answer = f"echo: {text}"
            completion = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": _words(body), "completion_tokens": len(answer.split())},
            }
            response = {"status_code": 200, "request_id": f"req_{n}", "body": completion}
            output.append({"id": f"r_{n}", "custom_id": line["custom_id"], "response": response, "error": None})
        for key, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{next(self._ids)}"
                self._files[file_id] = b"".join(orjson.dumps(r) + b"\n" for r in rows)
                batch[key] = file_id

    async def _content(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        data = self._files.get(request.match_info["file_id"])
        if data is None:
            return web.json_response({"error": {"message": "No such file (fake)."}}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")
